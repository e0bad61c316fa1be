"""A Celery app with broker *and* result backend on one gorelay store.

``celery -A results_app worker``; configured by the environment only, and it
never imports ``gorelay_kombu`` (``result_backend = "gorelay…"`` resolves
through the ``celery.result_backends`` entry point):

* ``GORELAY_RESULTS_URL``: the store URL (SQLite file, PostgreSQL schema or
  Redis key prefix of the test), broker and backend.
* ``GORELAY_RESULTS_DIR``: where tasks keep their attempt counters.
* ``GORELAY_RESULTS_RETENTION``: ``gorelay_history_retention`` as JSON (optional).
"""

from __future__ import annotations

import json
import os
import time

from celery import Celery

URL = os.environ.get("GORELAY_RESULTS_URL", "gorelay+sqlite:///results-unconfigured.db")
DIR = os.environ.get("GORELAY_RESULTS_DIR", ".")


def make_app(url: str = URL) -> Celery:
    app = Celery("results", broker=url, backend=url, set_as_current=False)
    app.conf.update(
        broker_connection_retry_on_startup=True,
        broker_transport_options={"visibility_timeout": 5},
        task_track_started=True,
        result_extended=True,
        gorelay_worker_heartbeat=0.5,
        worker_hijack_root_logger=True,
        worker_redirect_stdouts=False,
    )
    retention = os.environ.get("GORELAY_RESULTS_RETENTION")
    if retention:
        app.conf.gorelay_history_retention = json.loads(retention)
    return app


app = make_app()


class PaymentDeclined(Exception):
    """A user-defined exception that must round-trip through the backend."""

    def __init__(self, order: str, reason: str) -> None:
        super().__init__(order, reason)
        self.order = order
        self.reason = reason


def _attempts(tag: str) -> int:
    """How many times ``tag`` has run (this one included), across processes."""
    fd = os.open(os.path.join(DIR, f"attempts-{tag}"), os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, b".")
    finally:
        os.close(fd)
    return os.path.getsize(os.path.join(DIR, f"attempts-{tag}"))


@app.task(name="results.add")
def add(x: int, y: int) -> int:
    return x + y


@app.task(name="results.mul")
def mul(x: int, y: int) -> int:
    return x * y


@app.task(name="results.tsum")
def tsum(values: list[int]) -> int:
    return sum(values)


@app.task(name="results.decline")
def decline(order: str) -> None:
    raise PaymentDeclined(order, "card expired")


@app.task(name="results.sleep")
def sleep(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


@app.task(name="results.flaky", bind=True, max_retries=5)
def flaky(self, tag: str, failures: int) -> str:
    """Fail ``failures`` times (retrying at once), then succeed."""
    if _attempts(tag) <= failures:
        raise self.retry(exc=ConnectionError(f"attempt {self.request.retries} of {tag}"),
                         countdown=0.1)
    return f"{tag} ok after {self.request.retries} retries"


@app.task(name="results.hopeless", bind=True, max_retries=2)
def hopeless(self, tag: str) -> None:
    """Fails every time; out of retries after two."""
    _attempts(tag)
    raise self.retry(exc=TimeoutError(f"upstream down ({tag})"), countdown=0.1)


@app.task(name="results.big")
def big(size: int) -> str:
    return "x" * size


@app.task(name="results.slow_late", acks_late=True)
def slow_late(tag: str, seconds: float) -> str:
    _attempts(tag)
    time.sleep(seconds)
    return tag
