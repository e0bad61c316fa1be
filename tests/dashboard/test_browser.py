"""The dashboard in a real browser: Debian's chromium, headless, driven by Playwright.

A real Celery producer enqueues a task and the overview's counters change
without a reload; a dead task is retried by clicking; XSS payloads show as
text and never run; the page falls back to polling when the websocket
fails and goes live again when it comes back.  Every page is saved as a
screenshot (light and dark) under ``tests/artifacts/dashboard/``.

Skips when chromium or Playwright is missing locally; fails under CI=true
(``.ci/run`` installs ``chromium`` and ``chromium-driver``).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest

from gorelay_kombu.dashboard import serve_in_thread
from gorelay_kombu.history import TaskEvent
from tests.conftest import IN_CI

from .conftest import TOKEN, add_task, add_worker

ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts" / "dashboard"
#: how long the browser may take to show a change (generous: a shared 2-core machine)
SHOWS_WITHIN_MS = 10_000


def _chromium() -> str | None:
    return os.environ.get("GORELAY_TEST_CHROMIUM") or shutil.which("chromium") or (
        "/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else None)


def _require(what: str, ok: bool) -> None:
    if ok:
        return
    if IN_CI:
        pytest.fail(f"{what} (CI=true: browser tests must run, not skip)")
    pytest.skip(what)


try:
    from playwright.sync_api import expect
except ImportError:  # the browser fixture skips (or fails under CI) with the reason
    expect = None


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _require("Playwright is not installed (pip install playwright)", False)
    path = _chromium()
    _require("chromium is not installed (apt-get install chromium chromium-driver)",
             path is not None)
    args = ["--no-sandbox"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []
    with sync_playwright() as pw:
        launched = pw.chromium.launch(executable_path=path, headless=True, args=args)
        yield launched
        launched.close()


@pytest.fixture
def server(tmp_path):
    url = f"gorelay+sqlite:///{tmp_path / 'relay.db'}"
    srv = serve_in_thread(url, "127.0.0.1:0", poll_interval=0.1)
    srv.store_url = url  # type: ignore[attr-defined]
    yield srv
    srv.stop()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    pg = context.new_page()
    pg.problems = []  # type: ignore[attr-defined]
    pg.on("console", lambda m: m.type == "error" and pg.problems.append(m.text))
    pg.on("pageerror", lambda e: pg.problems.append(str(e)))
    pg.on("dialog", lambda d: (pg.problems.append(f"dialog: {d.message}"), d.dismiss()))
    yield pg
    context.close()


def shot(pg, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    pg.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def count(pg, state: str) -> str:
    return pg.inner_text(f'[data-testid="count-{state}"]')


def test_overview_counters_follow_a_real_celery_task_without_reload(server, page):
    from celery import Celery

    from gorelay_kombu.compat.recorder import flush_all

    page.goto(server.url)
    expect(page.locator("body")).to_have_attribute("data-live-state", "live",
                                              timeout=SHOWS_WITHIN_MS)
    assert count(page, "PENDING") == "0"
    page.evaluate("window.__sameDocument = true")
    producer = Celery("browser-test", broker=server.store_url, set_as_current=False)
    try:
        producer.send_task("shop.send_email", args=["ada@example.com"], queue="emails")
        flush_all()
    finally:
        producer.close()
    expect(page.get_by_test_id("count-PENDING")).to_have_text("1", timeout=SHOWS_WITHIN_MS)
    page.wait_for_selector('[data-testid="ready-emails-normal"]', timeout=SHOWS_WITHIN_MS)
    assert page.inner_text('[data-testid="ready-emails-normal"]') == "1"
    assert page.evaluate("window.__sameDocument") is True  # updated in place, not reloaded
    history = server.dashboard.history
    [task] = history.tasks().items
    history.record([TaskEvent(task.task_id, "succeeded", time.time(), {"runtime": 0.2})])
    expect(page.get_by_test_id("count-SUCCESS")).to_have_text("1", timeout=SHOWS_WITHIN_MS)
    assert count(page, "PENDING") == "0"
    assert page.problems == []


def test_retry_a_dead_task_by_clicking(server, page):
    history = server.dashboard.history
    dead = add_task(history, "DEAD", name="billing.charge", queue="billing",
                    args='[1999, "eur"]', kwargs="{}")
    page.on("dialog", lambda d: d.accept())
    page.goto(server.url + "failures?state=DEAD")
    page.click(f'[data-testid="retry-{dead}"]')
    page.wait_for_selector(".notice-ok", timeout=SHOWS_WITHIN_MS)
    assert f"Retried task {dead} as " in page.inner_text(".notice-ok")
    new = page.inner_text(".notice-ok").rsplit(" as ", 1)[1].rstrip(".")
    assert history.task(new).retry_of == dead
    [message] = server.dashboard.store.reserve(["billing"], 10, "browser-test", 60)
    assert json.loads(message.payload)["headers"]["id"] == new
    page.goto(server.url + f"tasks/{new}")
    assert page.inner_text('[data-testid="task-id"]') == new
    page.click(f'a[href="/tasks/{dead}"]')  # the new attempt links back
    assert "retry-requested" in page.inner_text("#task-timeline")
    assert [p for p in page.problems if not p.startswith("dialog")] == []


def test_xss_payloads_are_shown_as_text_and_never_run(server, page):
    script = "<script>window.__xss = 1</script>"
    img = "<img src=x onerror=\"window.__xss = 2\">"
    task_id = add_task(server.dashboard.history, "FAILURE", name=f"evil{script}",
                       args=json.dumps([script, img]), kwargs=json.dumps({"html": img}),
                       exc_message=img)
    for path in ("", "tasks", f"tasks/{task_id}", "failures"):
        page.goto(server.url + path)
        page.wait_for_load_state("load")
        assert page.evaluate("window.__xss") is None, path
        assert page.locator("img[src=x]").count() == 0, path
    assert script in page.inner_text("table")  # shown, as text
    page.goto(server.url + f"tasks/{task_id}")
    assert script in page.inner_text('[data-testid="args"]')
    assert json.dumps(img) in page.inner_text('[data-testid="kwargs"]')  # as JSON text
    assert page.evaluate("window.__xss") is None
    assert page.problems == []


def test_falls_back_to_polling_and_goes_live_again(server, page):
    attempts = []

    def flaky(ws):
        attempts.append(ws.url)
        if len(attempts) <= 2:
            ws.close()
        else:
            ws.connect_to_server()

    page.route_web_socket("**/live", flaky)
    page.goto(server.url)
    expect(page.locator("body")).to_have_attribute("data-live-state", "polling",
                                              timeout=SHOWS_WITHIN_MS)
    add_task(server.dashboard.history, "FAILURE")
    expect(page.get_by_test_id("count-FAILURE")).to_have_text("1", timeout=SHOWS_WITHIN_MS)
    expect(page.locator("body")).to_have_attribute("data-live-state", "live",
                                              timeout=SHOWS_WITHIN_MS)
    assert len(attempts) >= 3
    add_task(server.dashboard.history, "FAILURE")
    expect(page.get_by_test_id("count-FAILURE")).to_have_text("2", timeout=SHOWS_WITHIN_MS)
    assert page.problems == []


def _demo(server) -> str:
    """Enough of everything that each page has something to show."""
    history = server.dashboard.history
    store = server.dashboard.store
    now = time.time()
    from gorelay_kombu.storage import NewMessage

    for queue in ("celery", "emails"):
        store.declare_queue(queue)
    store.put_many([NewMessage("emails", b"{}", lane=lane) for lane in (0, 1, 1, 2)])
    poison = store.put(NewMessage("celery", b"not json"))
    store.dead_letter(poison, "undecodable message: JSONDecodeError: Expecting value")
    states = ["SUCCESS"] * 12 + ["FAILURE"] * 3 + ["STARTED", "PENDING", "DEAD", "REVOKED"]
    ids = [add_task(history, s, name=f"shop.{['email', 'pdf', 'sms'][i % 3]}",
                    args=json.dumps([i, f"user{i}@example.com"]), at=now - i * 150)
           for i, s in enumerate(states)]
    add_worker(history, "w1@host")
    add_worker(history, "w2@host", at=now - 120)
    return ids[12]


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_every_page_renders_cleanly_and_is_saved_as_a_screenshot(server, browser, scheme):
    failed = _demo(server)
    context = browser.new_context(viewport={"width": 1280, "height": 860}, color_scheme=scheme)
    pg = context.new_page()
    problems: list[str] = []
    pg.on("console", lambda m: m.type == "error" and problems.append(m.text))
    pg.on("pageerror", lambda e: problems.append(str(e)))
    try:
        for name, path in [("overview", ""), ("tasks", "tasks"), ("task", f"tasks/{failed}"),
                           ("failures", "failures"), ("queues", "queues"),
                           ("purge", "queues/purge?queue=emails"), ("workers", "workers")]:
            pg.goto(server.url + path)
            expect(pg.locator("body")).to_have_attribute("data-live-state", "live",
                                              timeout=SHOWS_WITHIN_MS)
            background = pg.evaluate("getComputedStyle(document.body).backgroundColor")
            assert (background == "rgb(14, 17, 23)") == (scheme == "dark"), background
            shot(pg, f"{name}-{scheme}")
        assert problems == []  # no CSP violation, no script error
    finally:
        context.close()


def test_login_page_screenshot(tmp_path, browser):
    url = f"gorelay+sqlite:///{tmp_path / 'locked.db'}"
    srv = serve_in_thread(url, "127.0.0.1:0", token=TOKEN)
    context = browser.new_context(viewport={"width": 1280, "height": 700})
    pg = context.new_page()
    try:
        pg.goto(srv.url + "tasks")
        assert "/login" in pg.url
        shot(pg, "login")
        pg.fill('input[name="token"]', TOKEN)
        pg.click('button[type="submit"]')
        pg.wait_for_selector("h1:has-text('Tasks')")
        assert pg.url.endswith("/tasks")
    finally:
        context.close()
        srv.stop()
