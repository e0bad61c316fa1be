"""Fixtures for the dashboard tests: a dashboard app over a fresh store of each kind.

``site`` opens the dashboard by URL (so it builds its own Celery app for
retry, cancel and revoke, publishing into the same store) and gives a Flask
test client with helpers for the CSRF token and actions.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.conftest import IN_CI, cleanup, store_url

try:
    import flask  # noqa: F401
    import flask_sock  # noqa: F401
except ImportError as exc:  # the dashboard extra is not installed
    if IN_CI:
        raise
    pytest.skip(f"the dashboard needs {exc.name}: pip install -e \".[dashboard]\"",
                allow_module_level=True)

from gorelay_kombu.dashboard import Dashboard, create_app  # noqa: E402
from gorelay_kombu.history import History, TaskEvent, WorkerBeat  # noqa: E402
from gorelay_kombu.storage import Store  # noqa: E402

CSRF_META = re.compile(r'<meta name="csrf-token" content="([0-9a-f]+)">')
NOTICE = re.compile(r'<div class="notice notice-(\w+)" role="status">([^<]*)</div>')
TOKEN = "test-token-0123456789abcdef"


@dataclass
class Site:
    """A dashboard app under test."""

    kind: str
    url: str
    app: Any
    client: Any

    @property
    def dash(self) -> Dashboard:
        return self.app.extensions["gorelay_dashboard"]

    @property
    def store(self) -> Store:
        return self.dash.store

    @property
    def history(self) -> History:
        return self.dash.history

    def csrf(self) -> str:
        page = self.client.get("/tasks")
        found = CSRF_META.search(page.get_data(as_text=True))
        assert found, page.get_data(as_text=True)[:500]
        return found.group(1)

    def api(self, action: str, **fields: Any) -> Any:
        """POST /api/actions/<action> with the CSRF header, as the page's script would."""
        return self.client.post(f"/api/actions/{action}", json=fields,
                                headers={"X-CSRF-Token": self.csrf()})

    def form(self, action: str, next: str = "/", **fields: Any) -> Any:
        """POST the action's form as a browser would, following the redirect."""
        data = {"csrf_token": self.csrf(), "next": next, **fields}
        return self.client.post(f"/actions/{action}", data=data, follow_redirects=True)


def notice(response: Any) -> tuple[str, str] | None:
    found = NOTICE.search(response.get_data(as_text=True))
    return (found.group(1), found.group(2)) if found else None


def make_site(kind: str, tmp_path, **kwargs: Any) -> tuple[Site, str]:
    url = store_url(kind, tmp_path)
    app = create_app(url, **kwargs)
    return Site(kind, url, app, app.test_client()), url


def close_site(site: Site) -> None:
    site.dash.close()
    target = site.url
    if site.kind == "memory":
        from gorelay_kombu.storage.memory import MemoryStore

        MemoryStore.forget(target.split("://", 1)[1])
    else:
        cleanup(site.kind, target)


@pytest.fixture
def site(store_kind, tmp_path) -> Iterator[Site]:
    s, _ = make_site(store_kind, tmp_path)
    yield s
    close_site(s)


def new_id() -> str:
    return str(uuid.uuid4())


def add_task(history: History, state: str = "SUCCESS", *, task_id: str | None = None,
             name: str = "shop.send_email", queue: str = "celery", args: str | None = "[1, 2]",
             kwargs: str | None = '{"to": "a@example.com"}', at: float | None = None,
             lane: int = 1, **fields: Any) -> str:
    """Record a task that reached ``state`` (its events in order, ``at`` the last one)."""
    task_id = task_id or new_id()
    at = time.time() if at is None else at
    sent = {"name": name, "queue": queue, "lane": lane, "args": args, "kwargs": kwargs}
    events = [TaskEvent(task_id, "sent", at - 3, {k: v for k, v in sent.items() if v is not None})]
    if state in ("RECEIVED", "STARTED", "SUCCESS", "FAILURE", "RETRY", "DEAD"):
        events.append(TaskEvent(task_id, "received", at - 2, {"worker": "w1@host"}, "w1@host"))
    if state in ("STARTED", "SUCCESS", "FAILURE", "DEAD"):
        events.append(TaskEvent(task_id, "started", at - 1, {"worker": "w1@host"}, "w1@host"))
    last = {"SUCCESS": "succeeded", "FAILURE": "failed", "DEAD": "dead", "RETRY": "retried",
            "REVOKED": "revoked"}.get(state)
    if last:
        extra = {"runtime": 0.25} if state == "SUCCESS" else {}
        if state in ("FAILURE", "DEAD"):
            extra = {"exc_type": "ValueError", "exc_message": "boom",
                     "traceback": "Traceback (most recent call last):\nValueError: boom"}
        events.append(TaskEvent(task_id, last, at, {**extra, **fields}, "w1@host"))
    elif fields:
        events.append(TaskEvent(task_id, "sent", at - 3, fields))
    history.record(events)
    return task_id


def add_worker(history: History, hostname: str = "w1@host", at: float | None = None,
               **fields: Any) -> None:
    history.heartbeat([WorkerBeat(hostname, time.time() if at is None else at, pid=1234,
                                  pool="prefork", concurrency=4, queues=("celery",),
                                  started_at=time.time() - 60, **fields)])
