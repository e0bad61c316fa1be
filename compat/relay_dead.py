"""Dead tasks kept for re-drive: ``relay:dead:<task_id>`` in the store's key/value space.

When a Relay task fails for good (out of retries, or an exception its policy
does not retry), the worker stores what it takes to send it again: task
name, args, kwargs, queue and priority, plus why it died.  The record is
plain JSON, so anything that can read the store (the dashboard, a script)
can list and re-drive it; :func:`redrive` sends it again **under the same
task id** with ``retries`` back at 0, so its history continues on one
timeline (DEAD, then PENDING, RECEIVED...).  A re-drive claims the record
atomically (``kv_add``), so two concurrent re-drives send it once.

Records expire after :data:`DEAD_TTL` (30 days, GoRelay's retention of
failed tasks).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from .relay_errors import NotDeadError

if TYPE_CHECKING:
    from celery import Celery

    from ..storage import Store

#: seconds a dead task stays re-drivable
DEAD_TTL = 30 * 86400.0
DEAD_PREFIX = "relay:dead:"
#: held while a re-drive is being sent (seconds)
CLAIM_TTL = 60.0


def dead_key(task_id: str) -> str:
    return f"{DEAD_PREFIX}{task_id}"


def _claim_key(task_id: str) -> str:
    return f"relay:redrive:{task_id}"


@dataclass(frozen=True)
class DeadTask:
    """What a dead task's record holds (the JSON object at ``relay:dead:<id>``)."""

    task_id: str
    name: str
    args: list[Any]
    kwargs: dict[str, Any]
    queue: str | None
    priority: int | None
    retries: int
    exc_type: str
    reason: str
    dead_at: float = field(default_factory=time.time)

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> DeadTask:
        data = json.loads(raw)
        return cls(**{k: data.get(k) for k in cls.__dataclass_fields__})


def keep(store: Store, dead: DeadTask, ttl: float = DEAD_TTL) -> None:
    """Store ``dead`` for re-drive (replaces an older record of the same task)."""
    store.kv_set(dead_key(dead.task_id), dead.to_json(), ttl=ttl)


def find(store: Store, task_id: str) -> DeadTask | None:
    """The dead record of ``task_id``, or None."""
    raw = store.kv_get(dead_key(task_id))
    return None if raw is None else DeadTask.from_json(raw)


def redrive(app: Celery, store: Store, task_id: str) -> str:
    """Send dead task ``task_id`` again (same id, retries 0); return the id.

    Raises :class:`NotDeadError` if there is no record (never died, already
    re-driven, expired) or another re-drive of it is being sent.
    """
    dead = find(store, task_id)
    if dead is None:
        raise NotDeadError(
            f"Task {task_id} is not dead: there is no re-drivable record of it (it never "
            "failed for good, was already re-driven, or its record expired after "
            f"{DEAD_TTL / 86400:g} days). Look it up in the dashboard or history."
        )
    if store.kv_add(_claim_key(task_id), b"1", ttl=CLAIM_TTL) is not None:
        raise NotDeadError(f"Task {task_id} is being re-driven by another caller right now.")
    try:
        options: dict[str, Any] = {}
        if dead.queue:
            options["queue"] = dead.queue
        if dead.priority is not None:
            options["priority"] = dead.priority
        app.send_task(dead.name, args=dead.args, kwargs=dead.kwargs, task_id=dead.task_id,
                      **options)
        store.kv_delete(dead_key(task_id))
    finally:
        store.kv_delete(_claim_key(task_id))
    return dead.task_id


__all__ = ["DEAD_TTL", "DeadTask", "dead_key", "find", "keep", "redrive"]
