"""The Relay app the relay tests run real workers with (``celery -A relay_app:relay worker``).

Configured by environment, like a user's module: ``RELAY_TEST_URL`` is the store.
Handlers record what they did by appending one line per run to the file named
in their payload (``O_APPEND``: lines from concurrent processes never interleave).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

from celery import current_task

from gorelay_kombu import Relay
from gorelay_kombu.retry import Exponential

#: the flaky topic's policy: seeded, so a test computes the exact schedule
FLAKY_POLICY = Exponential(base=0.05, factor=3.0, jitter=0.5, seed=1234, max_retries=4)


@dataclass
class Record:
    path: str
    tag: str


@dataclass
class Flaky:
    path: str
    tag: str
    failures: int


def append(path: str, line: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line.rstrip("\n") + "\n").encode())
    finally:
        os.close(fd)


def make_relay(url: str) -> Relay:
    relay = Relay(url, task_default_queue="relay-tests", worker_prefetch_multiplier=1)

    @relay.register("rec.write")
    def write(p: Record) -> str:
        append(p.path, f"{p.tag} {current_task.request.hostname}")
        return p.tag

    @relay.register("rec.flaky", retry=FLAKY_POLICY)
    def flaky(p: Flaky) -> str:
        request = current_task.request
        append(p.path, json.dumps({"tag": p.tag, "retries": request.retries,
                                   "delay": getattr(request, "gorelay_retry_delay", None)}))
        if request.retries < p.failures:
            raise ConnectionError(f"attempt {request.retries} of {p.tag} fails")
        return "ok"

    return relay


relay = make_relay(os.environ.get("RELAY_TEST_URL", "gorelay://"))
