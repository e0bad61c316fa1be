"""The merge rules of :mod:`gorelay_kombu.history.base`, in plain Python.

The SQL histories lock (or read, under SQLite's write lock) the rows of a
batch's tasks, merge the batch in with :func:`merge_task` and write the rows
back, so every store applies the same rules:

* ``state`` is the state of the task's state-moving event with the latest
  ``at`` (ties: the later-recorded wins); the row keeps that ``at`` in
  ``state_at``.
* a non-None field of an event overwrites the stored value unless that
  field was set by a newer event: the row keeps, per field, the ``at`` of
  the event that set it (``field_at``, a JSON object).
* ``sent_at`` / ``received_at`` / ``started_at``: the latest ``at`` of an
  event of that name; ``finished_at``: of an event moving to a final state;
  ``updated_at``: of any event.

:func:`merge_task` also returns the counter changes the batch makes (tasks
per state, succeeded / failed per minute, runtime histogram buckets).
"""

from __future__ import annotations

import bisect
import json
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import fields
from typing import Any

from .base import EVENT_STATES, FINAL_STATES, RUNTIME_BUCKETS, STATES, TaskEvent, TaskRecord

#: the columns of a task row that make a TaskRecord, in TaskRecord order
RECORD_COLUMNS = tuple(f.name for f in fields(TaskRecord))
#: every column of a task row: the record's plus the merge bookkeeping
ROW_COLUMNS = (*RECORD_COLUMNS, "state_at", "field_at")

#: how each task field is stored (values arrive as str / int / float)
FIELD_TYPES: dict[str, type] = {
    "name": str, "queue": str, "lane": int, "eta": float, "args": str, "kwargs": str,
    "result": str, "exc_type": str, "exc_message": str, "traceback": str, "worker": str,
    "parent_id": str, "root_id": str, "group_id": str, "retry_of": str, "attempt": int,
    "runtime": float, "next_attempt_at": float,
}
#: event name -> the timestamp column it sets
STAMPS = {"sent": "sent_at", "received": "received_at", "started": "started_at"}
#: state of a record whose events so far only added to the timeline
INITIAL_STATE = "PENDING"

#: counter metrics; a counter is (metric, bucket) -> (n, total)
STATE_METRIC = "state"  # bucket: index in STATES
SUCCEEDED_METRIC = "succeeded"  # bucket: minute (epoch seconds // 60)
FAILED_METRIC = "failed"  # bucket: minute; FAILURE and DEAD
RUNTIME_METRIC = "runtime"  # bucket: index in RUNTIME_BUCKETS, len() for +Inf
THROUGHPUT_EVENTS = {"succeeded": SUCCEEDED_METRIC, "failed": FAILED_METRIC,
                     "dead": FAILED_METRIC}


class CounterDeltas:
    """Counter changes of one batch: counts ``n`` and float ``total`` per key."""

    __slots__ = ("n", "total")

    def __init__(self) -> None:
        self.n: Counter[tuple[str, int]] = Counter()
        self.total: defaultdict[tuple[str, int], float] = defaultdict(float)

    def add(self, metric: str, bucket: int, n: int, total: float = 0.0) -> None:
        self.n[(metric, bucket)] += n
        self.total[(metric, bucket)] += total

    def rows(self) -> list[dict[str, Any]]:
        """Non-zero changes as parameter rows, in key order (the lock order)."""
        keys = sorted(k for k in self.n if self.n[k] or self.total.get(k))
        return [{"metric": m, "bucket": b, "n": self.n[(m, b)],
                 "total": self.total.get((m, b), 0.0)} for m, b in keys]

    def state_change(self, old: str | None, new: str | None) -> None:
        if old == new:
            return
        if old is not None:
            self.add(STATE_METRIC, STATES.index(old), -1)
        if new is not None:
            self.add(STATE_METRIC, STATES.index(new), 1)


def runtime_bucket(runtime: float) -> int:
    """Index of the first bucket whose upper bound (``le``) holds ``runtime``."""
    return bisect.bisect_left(RUNTIME_BUCKETS, runtime)


def new_row(task_id: str) -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(ROW_COLUMNS)
    row.update(task_id=task_id, state=INITIAL_STATE, field_at="{}")
    return row


def _later(current: float | None, at: float) -> float:
    return at if current is None or at > current else current


def merge_task(
    row: dict[str, Any] | None, task_id: str, events: Sequence[TaskEvent],
    deltas: CounterDeltas,
) -> dict[str, Any]:
    """Merge ``events`` (in arrival order) into ``row`` (None: a new task).

    Returns the new row and adds the counter changes to ``deltas``.
    """
    old_state = None if row is None else row["state"]
    row = new_row(task_id) if row is None else dict(row)
    field_at: dict[str, float] = json.loads(row["field_at"] or "{}")
    for e in events:
        at = float(e.at)
        state = EVENT_STATES.get(e.event)
        if state is not None and (row["state_at"] is None or at >= row["state_at"]):
            row["state"], row["state_at"] = state, at
        stamp = STAMPS.get(e.event)
        if stamp is not None:
            row[stamp] = _later(row[stamp], at)
        if state in FINAL_STATES:
            row["finished_at"] = _later(row["finished_at"], at)
        row["updated_at"] = _later(row["updated_at"], at)
        for name, value in e.fields.items():
            kind = FIELD_TYPES.get(name)
            if kind is None or value is None:
                continue  # not a task field, or "not known here": never clears
            if field_at.get(name, at) > at:
                continue  # a newer event set it
            row[name] = kind(value)
            field_at[name] = at
        metric = THROUGHPUT_EVENTS.get(e.event)
        if metric is not None:
            deltas.add(metric, int(at // 60), 1)
        runtime = e.fields.get("runtime")
        if runtime is not None:
            deltas.add(RUNTIME_METRIC, runtime_bucket(float(runtime)), 1, float(runtime))
    row["field_at"] = json.dumps(field_at, separators=(",", ":"), sort_keys=True)
    deltas.state_change(old_state, row["state"])
    return row


def group_by_task(events: Sequence[TaskEvent]) -> dict[str, list[TaskEvent]]:
    """Events per task id, in arrival order, task ids sorted (the lock order)."""
    grouped: dict[str, list[TaskEvent]] = {}
    for e in events:
        grouped.setdefault(e.task_id, []).append(e)
    return {task_id: grouped[task_id] for task_id in sorted(grouped)}
