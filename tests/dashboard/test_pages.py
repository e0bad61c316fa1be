"""Every page and JSON route, on every store: what a user sees and scripts read."""

from __future__ import annotations

import time
from html import unescape

from gorelay_kombu.history import STATES
from gorelay_kombu.storage import NewMessage

from .conftest import add_task, add_worker


def test_overview_shows_counts_queues_workers_and_chart(site):
    site.store.declare_queue("emails")
    site.store.put_many([NewMessage("emails", b"{}", lane=0), NewMessage("emails", b"{}")])
    for state in ("SUCCESS", "SUCCESS", "FAILURE", "PENDING"):
        add_task(site.history, state)
    add_worker(site.history, "alive@host")
    add_worker(site.history, "gone@host", at=time.time() - 3600)
    page = site.client.get("/")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert 'data-testid="count-SUCCESS">2<' in html
    assert 'data-testid="count-FAILURE">1<' in html
    assert 'data-testid="count-PENDING">1<' in html
    assert 'data-testid="waiting">2<' in html
    assert 'data-testid="ready-emails-high">1<' in html
    assert 'data-testid="ready-emails-normal">1<' in html
    assert 'data-testid="live-workers">1<' in html
    assert "alive@host" in html and "gone@host" in html
    assert "<svg class=\"chart\"" in html and "2 succeeded, 1 failed" in html


def test_overview_json(site):
    add_task(site.history, "SUCCESS")
    add_worker(site.history)
    site.store.declare_queue("celery")
    site.store.put(NewMessage("celery", b"{}"))
    data = site.client.get("/api/overview").get_json()
    assert data["counts"]["SUCCESS"] == 1 and set(data["counts"]) == set(STATES)
    assert data["waiting"] == 1
    assert data["oldest_ready_at"] is not None
    assert [q["queue"] for q in data["queues"]] == ["celery"]
    assert data["live_workers"] == 1 and data["workers"][0]["status"] == "live"
    assert len(data["throughput"]) == 60 and data["throughput"][-1]["succeeded"] == 1


def test_internal_queues_hidden_unless_asked(site):
    site.store.declare_queue("celery")
    site.store.declare_queue("w1@host.celery.pidbox")
    site.store.declare_queue("celeryev.1234")
    assert [q["queue"] for q in site.client.get("/api/queues").get_json()] == ["celery"]
    everything = site.client.get("/api/queues?internal=1").get_json()
    assert {q["queue"] for q in everything} == {"celery", "w1@host.celery.pidbox",
                                                "celeryev.1234"}
    assert "w1@host.celery.pidbox" in site.client.get("/queues?internal=1").get_data(
        as_text=True)
    assert "w1@host.celery.pidbox" not in site.client.get("/queues").get_data(as_text=True)


def test_task_list_filters_search_order_and_pages(site):
    now = time.time()
    emails = [add_task(site.history, "SUCCESS", name="shop.send_email", queue="emails",
                       args=f'["user{i}@example.com"]', at=now - 100 + i) for i in range(5)]
    failed = add_task(site.history, "FAILURE", name="shop.render_pdf", queue="reports",
                      args='["invoice-77"]', at=now)
    api = site.client.get

    def ids(query: str) -> list[str]:
        return [t["task_id"] for t in api(f"/api/tasks{query}").get_json()["items"]]

    assert ids("?state=FAILURE") == [failed]
    assert ids("?queue=emails") == list(reversed(emails))
    assert ids("?queue=emails&order=oldest") == emails
    assert ids("?name=shop.render_pdf") == [failed]
    assert ids("?q=invoice-77") == [failed]
    assert ids("?q=" + failed[:8]) == [failed]
    assert ids("?state=SUCCESS&queue=reports") == []
    first = api("/api/tasks?queue=emails&limit=2").get_json()
    assert first["has_more"] and [t["task_id"] for t in first["items"]] == emails[:2:-1][:2]
    last = api("/api/tasks?queue=emails&limit=2&offset=4").get_json()
    assert not last["has_more"] and [t["task_id"] for t in last["items"]] == [emails[0]]
    assert ids("?state=NOT-A-STATE&limit=100") == ids("?limit=100")

    html = api("/tasks?queue=emails&limit=2").get_data(as_text=True)
    assert emails[4] in html and emails[0] not in html
    assert 'rel="next" href="/tasks?queue=emails&amp;offset=2"' in html
    html = api("/tasks?state=FAILURE").get_data(as_text=True)
    assert failed in html and emails[0] not in html
    assert '<option value="shop.render_pdf">' in html  # the name filter lists names


def test_task_detail_shows_everything_and_links(site):
    root = add_task(site.history, "SUCCESS", name="flow.start")
    child = add_task(site.history, "FAILURE", name="flow.step", parent_id=root, root_id=root,
                     attempt=2, worker="w9@host")
    html = site.client.get(f"/tasks/{child}").get_data(as_text=True)
    assert "flow.step" in html and child in html
    assert "ValueError" in html and "boom" in html and "Traceback (most recent call last)" in html
    assert f'href="/tasks/{root}"' in html  # parent and root links
    assert "w9@host" in html
    assert "3 <span class=\"muted\">(2 retries)" in html
    for event in ("sent", "received", "started", "failed"):
        assert f"<strong>{event}</strong>" in html
    assert '"to": "a@example.com"' in unescape(html)  # kwargs pretty-printed
    workflow = site.client.get(f"/api/tasks?root_id={root}").get_json()["items"]
    assert child in [t["task_id"] for t in workflow]
    data = site.client.get(f"/api/tasks/{child}").get_json()
    assert data["task"]["parent_id"] == root
    assert [e["event"] for e in data["events"]] == ["sent", "received", "started", "failed"]


def test_unknown_task_is_404_on_page_and_api(site):
    page = site.client.get("/tasks/no-such-task")
    assert page.status_code == 404 and "no-such-task" in page.get_data(as_text=True)
    api = site.client.get("/api/tasks/no-such-task")
    assert api.status_code == 404 and "no-such-task" in api.get_json()["error"]


def test_failures_page_lists_failed_dead_and_dead_letters(site):
    failed = add_task(site.history, "FAILURE")
    dead = add_task(site.history, "DEAD")
    site.store.declare_queue("celery")
    poison = site.store.put(NewMessage("celery", b"\x00 not json"))
    site.store.dead_letter(poison, "undecodable message: JSONDecodeError")
    html = site.client.get("/failures").get_data(as_text=True)
    assert failed in html and dead not in html
    assert "undecodable message: JSONDecodeError" in html
    assert dead in site.client.get("/failures?state=DEAD").get_data(as_text=True)
    letters = site.client.get("/api/dead-letters").get_json()
    assert [(d["queue"], d["id"]) for d in letters] == [("celery", poison)]


def test_queues_and_purge_confirmation_pages(site):
    site.store.declare_queue("emails")
    site.store.put(NewMessage("emails", b"{}", lane=2))
    html = site.client.get("/queues").get_data(as_text=True)
    assert "emails" in html and 'href="/queues/purge?queue=emails"' in html
    confirm = site.client.get("/queues/purge?queue=emails")
    assert confirm.status_code == 200 and 'name="confirm"' in confirm.get_data(as_text=True)
    assert site.client.get("/queues/purge?queue=nope").status_code == 404


def test_workers_page_and_json_call_a_silent_worker_lost(site):
    add_worker(site.history, "live@host")
    add_worker(site.history, "silent@host", at=time.time() - 16)  # > 3 x 5 s
    add_worker(site.history, "done@host", stopped=True)
    html = site.client.get("/workers").get_data(as_text=True)
    assert "live@host" in html and "silent@host" in html
    status = {w["hostname"]: w["status"] for w in site.client.get("/api/workers").get_json()}
    assert status == {"live@host": "live", "silent@host": "lost", "done@host": "offline"}


def test_names_and_version(site):
    add_task(site.history, name="b.task")
    add_task(site.history, name="a.task")
    assert site.client.get("/api/names").get_json() == ["a.task", "b.task"]
    before = site.client.get("/api/version").get_json()["stamp"]
    assert site.client.get("/api/version").get_json()["stamp"] == before
    add_task(site.history, "FAILURE")
    assert site.client.get("/api/version").get_json()["stamp"] != before


def test_metrics_in_prometheus_text_format(site):
    site.store.declare_queue("emails")
    site.store.put_many([NewMessage("emails", b"{}", lane=0)] * 2)
    add_task(site.history, "SUCCESS")
    add_task(site.history, "FAILURE")
    add_worker(site.history)
    response = site.client.get("/metrics")
    assert response.status_code == 200
    assert response.content_type.startswith("text/plain; version=0.0.4")
    lines = response.get_data(as_text=True).splitlines()
    assert 'gorelay_queue_messages{queue="emails",lane="high",state="ready"} 2' in lines
    assert 'gorelay_tasks{state="SUCCESS"} 1' in lines
    assert 'gorelay_tasks{state="FAILURE"} 1' in lines
    assert 'gorelay_task_runtime_seconds_bucket{le="0.25"} 1' in lines
    assert 'gorelay_task_runtime_seconds_bucket{le="+Inf"} 1' in lines
    assert "gorelay_task_runtime_seconds_count 1" in lines
    assert 'gorelay_workers{status="live"} 1' in lines
    assert 'gorelay_worker_up{hostname="w1@host"} 1' in lines
    assert any(line.startswith('gorelay_queue_oldest_ready_age_seconds{queue="emails"')
               for line in lines)
    for line in lines:  # every sample line is "name{labels} number"
        if not line.startswith("#"):
            float(line.rsplit(" ", 1)[1].replace("+Inf", "inf"))


def test_metrics_escape_label_values(site):
    site.store.declare_queue('we"ird\\queue')
    text = site.client.get("/metrics").get_data(as_text=True)
    assert 'queue="we\\"ird\\\\queue"' in text


def test_empty_store_renders_every_page(site):
    for path in ("/", "/tasks", "/failures", "/queues", "/workers", "/metrics",
                 "/api/overview", "/api/tasks", "/api/queues", "/api/workers",
                 "/api/dead-letters", "/api/names", "/api/version"):
        response = site.client.get(path)
        assert response.status_code == 200, path
