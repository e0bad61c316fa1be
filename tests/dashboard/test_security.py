"""Safety: token, CSRF, Origin and Host checks, headers, escaping, bind refusal.

Task arguments are attacker-controlled input: a task whose args are
``<script>`` or ``<img onerror>`` must come out as text everywhere.
"""

from __future__ import annotations

import json
import time

import pytest

from gorelay_kombu.dashboard import (
    UnsafeBindError,
    WeakTokenError,
    create_app,
    create_blueprint,
    make_server_for,
)
from gorelay_kombu.errors import ConfigurationError, GoRelayError
from gorelay_kombu.history import TaskEvent

from .conftest import TOKEN, add_task, close_site, make_site

SCRIPT = "<script>alert('xss')</script>"
IMG = '<img src=x onerror="alert(1)">'


@pytest.fixture
def locked(store_kind, tmp_path):
    s, _ = make_site(store_kind, tmp_path, token=TOKEN)
    yield s
    close_site(s)


def test_pages_carry_a_strict_content_security_policy(site):
    for path in ("/", "/tasks", "/api/overview", "/metrics", "/tasks/missing"):
        headers = site.client.get(path).headers
        csp = headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp and "default-src 'none'" in csp, path
        assert "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["X-Frame-Options"] == "DENY"


def test_xss_payloads_in_every_field_come_out_escaped(site):
    evil = add_task(site.history, "FAILURE", name=f"evil.{SCRIPT}", queue=f"q{IMG}",
                    args=json.dumps([SCRIPT, IMG]), kwargs=json.dumps({"x": IMG}),
                    exc_message=IMG, worker=SCRIPT)
    site.history.record([TaskEvent(evil, "note", time.time(), info=SCRIPT, worker=IMG)])
    site.store.declare_queue(f"queue{SCRIPT}")
    for path in ("/", f"/tasks/{evil}", "/tasks", "/tasks?state=FAILURE", "/failures",
                 "/queues", f"/tasks?q={SCRIPT}", f"/tasks?queue={IMG}"):
        html = site.client.get(path).get_data(as_text=True)
        assert "<script>alert" not in html, path
        assert "<img src=x" not in html and "<img src=" not in html, path
    html = site.client.get(f"/tasks/{evil}").get_data(as_text=True)
    assert "&lt;script&gt;alert(" in html and "&lt;img src=x onerror=" in html
    assert html.count("&lt;script&gt;") >= 4  # name, args, worker, timeline info
    assert site.client.get("/api/tasks").get_json()["items"][0]["name"] == f"evil.{SCRIPT}"


def test_actions_need_the_csrf_token(site):
    failed = add_task(site.history, "FAILURE")
    for headers in ({}, {"X-CSRF-Token": "0" * 64}):
        response = site.client.post("/api/actions/delete", json={"task_id": failed},
                                    headers=headers)
        assert response.status_code == 403 and "CSRF" in response.get_json()["error"]
    form = site.client.post("/actions/delete", data={"task_id": failed, "next": "/"})
    assert form.status_code == 403 and "security token" in form.get_data(as_text=True)
    assert site.history.task(failed) is not None


def test_a_token_from_another_browser_is_refused(site):
    failed = add_task(site.history, "FAILURE")
    token = site.csrf()
    other = site.app.test_client()
    other.get("/")  # its own browser id
    response = other.post("/api/actions/delete", json={"task_id": failed},
                          headers={"X-CSRF-Token": token})
    assert response.status_code == 403
    assert site.history.task(failed) is not None


def test_actions_from_another_origin_are_refused(site):
    failed = add_task(site.history, "FAILURE")
    response = site.client.post("/api/actions/delete", json={"task_id": failed},
                                headers={"X-CSRF-Token": site.csrf(),
                                         "Origin": "https://evil.example"})
    assert response.status_code == 403 and "another site" in response.get_json()["error"]
    ok = site.client.post("/api/actions/delete", json={"task_id": failed},
                          headers={"X-CSRF-Token": site.csrf(), "Origin": "http://localhost"})
    assert ok.status_code == 200


def test_token_protects_every_page_and_route(locked):
    c = locked.client
    for path in ("/", "/tasks", "/failures", "/queues", "/workers", "/tasks/x"):
        response = c.get(path)
        assert response.status_code == 302 and "/login" in response.headers["Location"], path
    for path in ("/api/overview", "/api/tasks", "/metrics", "/api/version"):
        response = c.get(path)
        assert response.status_code == 401, path
    assert c.get("/login").status_code == 200
    assert c.get("/assets/app.css").status_code == 200


def test_bearer_token_opens_the_api_and_skips_csrf(locked):
    failed = add_task(locked.history, "FAILURE")
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    assert locked.client.get("/metrics", headers=bearer).status_code == 200
    assert locked.client.get("/api/overview", headers=bearer).status_code == 200
    wrong = {"Authorization": "Bearer not-the-token-at-all"}
    assert locked.client.get("/api/overview", headers=wrong).status_code == 401
    response = locked.client.post("/api/actions/delete", json={"task_id": failed},
                                  headers=bearer)
    assert response.status_code == 200


def test_login_with_the_token_sets_a_cookie_that_is_not_the_token(locked):
    c = locked.client
    page = c.get("/login?next=/tasks").get_data(as_text=True)
    csrf = page.split('name="csrf_token" value="')[1].split('"')[0]
    bad = c.post("/login", data={"token": "wrong-token-wrong-token", "csrf_token": csrf,
                                 "next": "/tasks"})
    assert bad.status_code == 401 and "not this dashboard" in bad.get_data(as_text=True)
    good = c.post("/login", data={"token": TOKEN, "csrf_token": csrf, "next": "/tasks"})
    assert good.status_code == 303 and good.headers["Location"].endswith("/tasks")
    cookie = [v for k, v in good.headers.items() if k == "Set-Cookie" and "_auth=" in v][0]
    assert TOKEN not in cookie and "HttpOnly" in cookie
    assert c.get("/tasks").status_code == 200
    csrf = c.get("/tasks").get_data(as_text=True).split('name="csrf-token" content="')[1][:64]
    c.post("/logout", data={"csrf_token": csrf})
    assert c.get("/tasks").status_code == 302


def test_login_post_needs_csrf_too(locked):
    response = locked.client.post("/login", data={"token": TOKEN})
    assert response.status_code == 403


def test_host_check_against_dns_rebinding(store_kind, tmp_path):
    s, _ = make_site(store_kind, tmp_path, allowed_hosts=frozenset({"localhost", "127.0.0.1"}))
    try:
        assert s.client.get("/", headers={"Host": "127.0.0.1:8080"}).status_code == 200
        evil = s.client.get("/api/overview", headers={"Host": "attacker.example"})
        assert evil.status_code == 403 and "attacker.example" in evil.get_json()["error"]
    finally:
        close_site(s)


def test_binding_beyond_loopback_needs_a_token(tmp_path, monkeypatch):
    monkeypatch.delenv("GORELAY_DASHBOARD_TOKEN", raising=False)
    url = f"gorelay+sqlite:///{tmp_path / 'r.db'}"
    for bind in ("0.0.0.0:0", "192.0.2.1:8080", "[::]:0", "example.com:80"):
        with pytest.raises(UnsafeBindError) as info:
            make_server_for(url, bind)
        assert "--token" in str(info.value) and "GORELAY_DASHBOARD_TOKEN" in str(info.value)
        assert isinstance(info.value, GoRelayError) and isinstance(info.value, ConfigurationError)
    with pytest.raises(WeakTokenError, match="at least 16"):
        make_server_for(url, "0.0.0.0:0", token="short")
    monkeypatch.setenv("GORELAY_DASHBOARD_TOKEN", TOKEN)
    server = make_server_for(url, "0.0.0.0:0")  # the environment's token is enough
    try:
        assert server.dashboard.settings.token == TOKEN
        assert server.dashboard.settings.allowed_hosts is None
    finally:
        server.stop()


def test_loopback_without_token_answers_loopback_names_only(tmp_path, monkeypatch):
    monkeypatch.delenv("GORELAY_DASHBOARD_TOKEN", raising=False)
    server = make_server_for(f"gorelay+sqlite:///{tmp_path / 'r.db'}", ":0")
    try:
        assert server.host == "127.0.0.1"
        client = server.app.test_client()
        assert client.get("/", headers={"Host": f"localhost:{server.port}"}).status_code == 200
        assert client.get("/", headers={"Host": "rebind.example"}).status_code == 403
    finally:
        server.stop()


def test_blueprint_mounts_under_a_prefix_with_its_own_checks(store, tmp_path):
    from flask import Flask

    host = Flask("host-app")

    @host.get("/")
    def home():
        return "the host app"

    bp = create_blueprint(store, token=TOKEN)
    host.register_blueprint(bp, url_prefix="/ops/tasks")
    c = host.test_client()
    assert c.get("/").get_data(as_text=True) == "the host app"
    assert "Content-Security-Policy" not in c.get("/").headers  # the host app is left alone
    response = c.get("/ops/tasks/")
    assert response.status_code == 302 and "/ops/tasks/login" in response.headers["Location"]
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    html = c.get("/ops/tasks/", headers=bearer).get_data(as_text=True)
    assert 'href="/ops/tasks/tasks"' in html and "/ops/tasks/assets/app.js" in html
    assert 'data-live-url="/ops/tasks/live"' in html
    bp.gorelay_dashboard.close()


def test_create_app_refuses_a_short_token(tmp_path):
    with pytest.raises(WeakTokenError):
        create_app(f"gorelay+sqlite:///{tmp_path / 'r.db'}", token="abc")


def test_two_dashboards_in_one_app_keep_their_own_tokens(tmp_path):
    from flask import Flask

    from gorelay_kombu.storage.sqlite import SQLiteStore

    host = Flask("host-app")
    stores = [SQLiteStore(str(tmp_path / f"{n}.db")) for n in ("a", "b")]
    for n, store in zip(("a", "b"), stores, strict=True):
        host.register_blueprint(create_blueprint(store, name=f"dash_{n}"), url_prefix=f"/{n}")
    c = host.test_client()
    for n, store in zip(("a", "b"), stores, strict=True):
        failed = add_task(store.history(), "FAILURE")
        html = c.get(f"/{n}/tasks").get_data(as_text=True)
        token = html.split('name="csrf-token" content="')[1].split('"')[0]
        response = c.post(f"/{n}/api/actions/delete", json={"task_id": failed},
                          headers={"X-CSRF-Token": token})
        assert response.status_code == 200, (n, response.get_json())
        store.close()
