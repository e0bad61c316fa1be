"""Celery app shared by ``bench/celery_bench.py`` and its worker subprocesses.

The worker imports it with ``celery -A benchapp worker`` (cwd and PYTHONPATH
set to ``bench/``); the harness imports it and calls :func:`make_app` once per
broker.  Configuration comes from the environment:

* ``BENCH_BROKER``: broker URL (default ``gorelay://``).
* ``BENCH_QUEUE``: queue (and exchange, routing key) name (default ``celery``).
* ``BENCH_OUT``: file the ``bench.noop`` task appends its record to.
* ``BENCH_LAT``: file the ``bench.latency`` task appends its record to.
* ``BENCH_HISTORY``: ``0`` turns gorelay's task history off (default on, as for users).

Both tasks record completion without a result backend: each appends one
16-byte record, ``struct.pack("dd", a, b)``, with a single ``os.write`` to a
file descriptor opened ``O_APPEND`` at import time.  One small ``O_APPEND``
write is atomic on a local file system, so concurrent pool threads never
interleave records, the task pays one syscall, and the harness observes
progress by polling the file size (records = size // 16).

* ``bench.noop()`` records ``(start, end)`` wall-clock times of its body.
* ``bench.latency(enqueued_at)`` records ``(enqueued_at, start)``.

``time.time()`` is one clock for every process on the machine, so times from
the harness and the worker compare directly.
"""

from __future__ import annotations

import os
import struct
import time

from celery import Celery

RECORD = struct.Struct("dd")


def _open(var: str) -> int | None:
    path = os.environ.get(var)
    if not path:
        return None
    return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)


_OUT_FD = _open("BENCH_OUT")
_LAT_FD = _open("BENCH_LAT")


def make_app(broker: str, queue: str) -> Celery:
    """A Celery app on ``broker`` whose default queue/exchange is ``queue``."""
    app = Celery("benchapp", broker=broker, set_as_current=False)
    app.conf.update(
        task_default_queue=queue,
        task_default_exchange=queue,
        task_default_routing_key=queue,
        task_ignore_result=True,
        result_backend=None,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        gorelay_history=os.environ.get("BENCH_HISTORY", "1") != "0",
    )
    return app


app = make_app(os.environ.get("BENCH_BROKER", "gorelay://"),
               os.environ.get("BENCH_QUEUE", "celery"))


@app.task(name="bench.noop")
def noop() -> None:
    start = time.time()
    if _OUT_FD is not None:
        os.write(_OUT_FD, RECORD.pack(start, time.time()))


@app.task(name="bench.latency")
def latency(enqueued_at: float) -> None:
    start = time.time()
    if _LAT_FD is not None:
        os.write(_LAT_FD, RECORD.pack(enqueued_at, start))
