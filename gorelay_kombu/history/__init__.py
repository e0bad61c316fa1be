"""Task history: what happened to each task, kept in the broker's own store.

The Celery layer (``gorelay_kombu.compat``) feeds it from Celery signals;
the dashboard reads it.  Each store implements :class:`History` in its own
module; :meth:`gorelay_kombu.storage.Store.history` returns it.
"""

from __future__ import annotations

from .base import (
    EVENT_STATES,
    FINAL_STATES,
    STATES,
    EventRecord,
    History,
    Page,
    TaskEvent,
    TaskRecord,
    WorkerBeat,
    WorkerRecord,
)

__all__ = [
    "EVENT_STATES", "FINAL_STATES", "STATES", "EventRecord", "History", "Page",
    "TaskEvent", "TaskRecord", "WorkerBeat", "WorkerRecord",
]
