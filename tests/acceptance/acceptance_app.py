"""The Celery app the acceptance tests run real workers with.

It is configured only by environment variables, the way a user's app is
configured, and it never imports ``gorelay_kombu``: the ``gorelay+sqlite://``
scheme must resolve through the package's ``kombu.serializers`` entry point.

Environment:

* ``GORELAY_ACCEPT_DB``: absolute path of the SQLite store file.
* ``GORELAY_ACCEPT_VT``: ``visibility_timeout`` in seconds (optional).
* ``GORELAY_ACCEPT_QUEUE``: ``task_default_queue`` (default ``celery``).
* ``GORELAY_ACCEPT_OPTIONS``: more ``broker_transport_options`` as JSON (optional).

Tasks record what they do by appending one line to a file opened with
``O_APPEND`` (one ``write`` per line, so lines from concurrent processes never
interleave); the tests read those files to count executions.
"""

from __future__ import annotations

import json
import os
import time

from celery import Celery, current_task


def broker_url(db_path: str) -> str:
    return f"gorelay+sqlite:///{os.path.abspath(db_path)}"  # four slashes: absolute


def make_app(db_path: str, visibility_timeout: float | None = None,
             default_queue: str = "celery", transport_options: dict | None = None) -> Celery:
    """A Celery app on the store ``db_path`` (also used by the test process)."""
    options = dict(transport_options or {})
    if visibility_timeout is not None:
        options["visibility_timeout"] = visibility_timeout
    app = Celery("acceptance", broker=broker_url(db_path), set_as_current=False)
    app.conf.update(
        broker_transport_options=options,
        broker_connection_retry_on_startup=True,
        task_default_queue=default_queue,
        task_ignore_result=True,
        worker_hijack_root_logger=True,
        worker_redirect_stdouts=False,
    )
    return app


def _env_vt() -> float | None:
    value = os.environ.get("GORELAY_ACCEPT_VT")
    return float(value) if value else None


app = make_app(
    os.environ.get("GORELAY_ACCEPT_DB", os.path.abspath("acceptance-unconfigured.db")),
    _env_vt(),
    os.environ.get("GORELAY_ACCEPT_QUEUE", "celery"),
    json.loads(os.environ.get("GORELAY_ACCEPT_OPTIONS") or "{}"),
)


def append(path: str, line: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line.rstrip("\n") + "\n").encode())
    finally:
        os.close(fd)


def _hostname() -> str:
    request = current_task.request if current_task else None
    return (getattr(request, "hostname", None) or "?") if request else "?"


@app.task(name="accept.record")
def record(path: str, tag: str) -> None:
    """One line ``<tag> <worker hostname>`` per execution."""
    append(path, f"{tag} {_hostname()}")


@app.task(name="accept.stamp")
def stamp(path: str, tag: str) -> None:
    """One line ``<tag> <epoch seconds>`` per execution."""
    append(path, f"{tag} {time.time():.6f}")


@app.task(name="accept.slow", acks_late=True)
def slow(path: str, tag: str, seconds: float) -> None:
    """``start <tag> <pid>``, sleep, ``done <tag> <pid>``; acked only when done."""
    append(path, f"start {tag} {os.getpid()} {time.time():.6f}")
    time.sleep(seconds)
    append(path, f"done {tag} {os.getpid()} {time.time():.6f}")
