"""The live feed over a real server: the websocket pushes a change when the store changes."""

from __future__ import annotations

import json
import time
import urllib.request

import pytest

from gorelay_kombu.dashboard import serve_in_thread

from .conftest import TOKEN, add_task, close_site, make_site

simple_websocket = pytest.importorskip("simple_websocket")


@pytest.fixture
def served(store_kind, tmp_path):
    s, url = make_site(store_kind, tmp_path)
    s.dash.close()  # only the URL is wanted: the server opens its own dashboard
    server = serve_in_thread(url, "127.0.0.1:0", poll_interval=0.05)
    yield server, s
    server.stop()
    close_site(s)


def connect(server, origin: str | None = None, headers: dict | None = None):
    extra = dict(headers or {})
    # simple_websocket's client sends "Host: 127.0.0.1" without the port; a browser's
    # Origin matches its Host header
    extra["Origin"] = origin or "http://127.0.0.1"
    return simple_websocket.Client.connect(server.url.replace("http://", "ws://") + "live",
                                           headers=extra)


def test_socket_says_hello_then_pushes_each_change(served):
    server, site = served
    ws = connect(server)
    try:
        hello = json.loads(ws.receive(timeout=10))
        assert hello["type"] == "hello" and hello["stamp"]
        add_task(server.dashboard.history, "SUCCESS")
        change = json.loads(ws.receive(timeout=10))
        assert change["type"] == "change" and change["stamp"] != hello["stamp"]
        add_task(server.dashboard.history, "FAILURE")
        again = json.loads(ws.receive(timeout=10))
        assert again["type"] == "change" and again["stamp"] != change["stamp"]
        with urllib.request.urlopen(server.url + "api/version") as response:
            assert json.load(response)["stamp"] == again["stamp"]
    finally:
        ws.close()


def test_socket_from_another_site_is_refused(served):
    server, _ = served
    with pytest.raises(Exception):  # noqa: B017 - the handshake fails (403)
        ws = connect(server, origin="https://evil.example")
        ws.receive(timeout=5)


def test_one_poller_serves_every_socket_and_stops_without_listeners(served):
    server, _ = served
    feed = server.dashboard.feed
    sockets = [connect(server) for _ in range(3)]
    for ws in sockets:
        assert json.loads(ws.receive(timeout=10))["type"] == "hello"
    assert feed.listeners == 3
    add_task(server.dashboard.history, "SUCCESS")
    stamps = {json.loads(ws.receive(timeout=10))["stamp"] for ws in sockets}
    assert len(stamps) == 1
    for ws in sockets:
        ws.close()
    for _ in range(400):  # the handlers notice the close and leave
        if feed.listeners == 0:
            break
        time.sleep(0.05)
    assert feed.listeners == 0


def test_socket_needs_the_token_when_one_is_set(store_kind, tmp_path):
    s, url = make_site(store_kind, tmp_path)
    s.dash.close()
    server = serve_in_thread(url, "127.0.0.1:0", token=TOKEN)
    try:
        with pytest.raises(Exception):  # noqa: B017 - 401 instead of the upgrade
            connect(server).receive(timeout=5)
        ws = connect(server, headers={"Authorization": f"Bearer {TOKEN}"})
        assert json.loads(ws.receive(timeout=10))["type"] == "hello"
        ws.close()
    finally:
        server.stop()
        close_site(s)


def test_server_reuses_its_threads_across_requests(served):
    server, _ = served
    for _ in range(40):
        with urllib.request.urlopen(server.url + "api/version") as response:
            response.read()
    # a few threads served them all in turn: no thread (nor SQLite connection) per request
    assert server.threads < 10
