"""The merge rules of :mod:`gorelay_kombu.history.base`, as one write per task and batch.

The SQL histories never read a task's row back to merge.  A batch's events
are grouped per task (:func:`group`); under the write lock a writer reads
only a few columns of the batch's stored tasks (:data:`LOCKED_COLUMNS`: the
state for the counters, ``updated_at`` for the field rule, the indexed
fields) and applies each task's events, one by one in arrival order, to
what it read: :func:`insert_params` gives the row of a new task and
:func:`update_params` the ``UPDATE`` of a stored one, which sets only the
columns that move, so that an update leaves the listing indexes alone
unless their columns change.  The rules, per event:

* ``state`` becomes the event's state if it moves the state and its ``at``
  is at or after ``state_at`` (the ``at`` of the event that set the state;
  ties: the later-recorded wins);
* an event at or after the record's ``updated_at`` overwrites the fields it
  carries; an older event only fills fields still None (for fields the
  writer did not read, the ``UPDATE`` does that: ``coalesce``);
* ``sent_at`` / ``received_at`` / ``started_at`` take the latest ``at`` of an
  event of that name, ``finished_at`` of an event moving to a final state,
  ``updated_at`` of any event.

:func:`group` also returns the counter changes that need no stored row
(succeeded / failed per minute, runtime histogram buckets); tasks per state
follow from the old and new states (:meth:`CounterDeltas.state_change`).
"""

from __future__ import annotations

import bisect
import json
import math
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import fields
from typing import Any

from .base import (
    EVENT_STATES,
    FINAL_STATES,
    RUNTIME_BUCKETS,
    STATES,
    TASK_FIELDS,
    TaskEvent,
    TaskRecord,
)

#: the columns of a task row that make a TaskRecord, in TaskRecord order
RECORD_COLUMNS = tuple(f.name for f in fields(TaskRecord))
#: the times an event moves forward (besides updated_at)
STAMP_COLUMNS = ("sent_at", "received_at", "started_at", "finished_at")
#: every column of a task row the writers set: the record's, the merge bookkeeping and
#: the timeline (``seq``, the listing order, is the store's)
ROW_COLUMNS = (*RECORD_COLUMNS, "state_at", "timeline")
#: the task fields an index lists by: an update sets them only when they change
INDEXED_FIELDS = ("name", "queue", "root_id")
#: what a writer reads of each stored task of a batch, under the write lock
LOCKED_COLUMNS = ("task_id", "state", "state_at", "updated_at", *INDEXED_FIELDS)
#: prefix of a shape item for a field an older event only fills (see update_params)
FILL = "?"

#: how each task field is stored (values arrive as str / int / float)
FIELD_TYPES: dict[str, type] = {
    "name": str, "queue": str, "lane": int, "eta": float, "args": str, "kwargs": str,
    "result": str, "exc_type": str, "exc_message": str, "traceback": str, "worker": str,
    "parent_id": str, "root_id": str, "group_id": str, "retry_of": str, "attempt": int,
    "runtime": float, "next_attempt_at": float,
}
assert tuple(FIELD_TYPES) == TASK_FIELDS
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
_STATE_INDEX = {s: i for i, s in enumerate(STATES)}
_INDEXED = {name: LOCKED_COLUMNS.index(name) for name in INDEXED_FIELDS}


class CounterDeltas:
    """Counter changes of one batch: counts ``n`` and float ``total`` per key."""

    __slots__ = ("n", "total")

    def __init__(self) -> None:
        self.n: Counter[tuple[str, int]] = Counter()
        self.total: defaultdict[tuple[str, int], float] = defaultdict(float)

    def add(self, metric: str, bucket: int, n: int, total: float = 0.0) -> None:
        self.n[(metric, bucket)] += n
        if total:
            self.total[(metric, bucket)] += total

    def copy(self) -> CounterDeltas:
        other = CounterDeltas()
        other.n.update(self.n)
        other.total.update(self.total)
        return other

    def rows(self) -> list[dict[str, Any]]:
        """Non-zero changes as parameter rows, in key order."""
        keys = sorted(k for k in self.n if self.n[k] or self.total.get(k))
        return [{"metric": m, "bucket": b, "n": self.n[(m, b)],
                 "total": self.total.get((m, b), 0.0)} for m, b in keys]

    def state_change(self, old: str | None, new: str | None) -> None:
        if old == new:
            return
        if old is not None:
            self.add(STATE_METRIC, _STATE_INDEX[old], -1)
        if new is not None:
            self.add(STATE_METRIC, _STATE_INDEX[new], 1)


def runtime_bucket(runtime: float) -> int:
    """Index of the first bucket whose upper bound (``le``) holds ``runtime``."""
    return bisect.bisect_left(RUNTIME_BUCKETS, runtime)


def group(events: Sequence[TaskEvent]) -> tuple[dict[str, list[TaskEvent]], CounterDeltas]:
    """The events of each task in arrival order (task ids sorted: the lock order) and
    the counter changes that need no stored row."""
    by_task: dict[str, list[TaskEvent]] = {}
    deltas = CounterDeltas()
    n = deltas.n
    for e in events:
        found = by_task.get(e.task_id)
        if found is None:
            by_task[e.task_id] = [e]
        else:
            found.append(e)
        metric = THROUGHPUT_EVENTS.get(e.event)
        if metric is not None:
            n[(metric, int(e.at // 60))] += 1
        runtime = e.fields.get("runtime")
        if runtime is not None:
            deltas.add(RUNTIME_METRIC, runtime_bucket(float(runtime)), 1, float(runtime))
    return {task_id: by_task[task_id] for task_id in sorted(by_task)}, deltas


def _fold(events: Sequence[TaskEvent], state: Any, state_at: Any, updated: Any,
          ) -> tuple[Any, Any, Any, dict[str, Any], dict[str, bool], dict[str, float], str]:
    """Apply ``events``, one by one in arrival order, to a task whose ``state``,
    ``state_at`` and ``updated_at`` are given (None: not recorded yet).

    Returns the state, ``state_at`` and ``updated_at`` after them; the task fields
    they set, typed; per field whether only older events gave it (it then only fills
    a None); the time stamps they move forward; and their timeline text.
    """
    values: dict[str, Any] = {}
    fills: dict[str, bool] = {}  # field -> only fills (no event as new as the record gave it)
    stamps: dict[str, float] = {}
    entries: list[str] = []
    for e in events:
        at = float(e.at)
        newer = updated is None or at >= updated
        if newer:
            updated = at
        event, worker, info = e.event, e.worker, e.info
        rule = _EVENT_RULES.get(event)
        if rule is not None:
            moved, stamp, final, quoted = rule
            if moved is not None and (state_at is None or at >= state_at):
                state, state_at = moved, at
            if final and at > stamps.get("finished_at", -math.inf):
                stamps["finished_at"] = at
            if stamp is not None and at > stamps.get(stamp, -math.inf):
                stamps[stamp] = at
        for name, value in e.fields.items():
            if value is None:
                continue  # "not known here": never clears
            kind = FIELD_TYPES.get(name)
            if kind is None:
                continue  # not a task field
            if newer:
                fills[name] = False
            elif name in fills:
                continue  # only the first older event carrying it fills it
            else:
                fills[name] = True
            values[name] = value if value.__class__ is kind else kind(value)
        if rule is not None and worker.__class__ is str and info is None and at - at == 0.0:
            # the usual entry (a worker's event, finite time), as timeline_entry writes it
            host = _quoted.get(worker) or _remember(worker)
            entries.append(f"[{quoted},{at!r},{host},null]")
        else:
            entries.append(timeline_entry(event, at, worker, info))
    return state, state_at, updated, values, fills, stamps, ",".join(entries)


def insert_params(task_id: str, events: Sequence[TaskEvent]) -> dict[str, Any]:
    """The row of a new task after ``events``: its non-None columns (keys in the order
    the events give them, so the same events give the same columns)."""
    state, state_at, updated, values, _, stamps, timeline = _fold(events, None, None, None)
    row: dict[str, Any] = {"task_id": task_id, **stamps, **values}
    row["state"] = state or INITIAL_STATE
    if state_at is not None:
        row["state_at"] = state_at
    row["updated_at"] = updated
    row["timeline"] = timeline
    return row


def update_params(stored: Sequence[Any], events: Sequence[TaskEvent],
                  ) -> tuple[tuple[str, ...], dict[str, Any], str]:
    """``(shape, params, state)``: the UPDATE applying ``events`` to a stored task.

    ``stored`` holds the task's :data:`LOCKED_COLUMNS`; ``state`` is its state
    after.  The shape names the columns the UPDATE sets (``sql_queries.update_task``
    builds it): state, ``state_at``, ``updated_at`` and changed indexed fields as
    merged here, stamps as times that only move forward, other fields as given or,
    with the :data:`FILL` prefix, only where still None.
    """
    task_id, old_state, old_state_at, old_updated = stored[0], stored[1], stored[2], stored[3]
    state, state_at, updated, values, fills, stamps, timeline = _fold(
        events, old_state, old_state_at, old_updated)
    params: dict[str, Any] = {"task_id": task_id, "timeline": "," + timeline}
    shape: list[str] = []
    if state != old_state:
        shape.append("state")
        params["state"] = state
    if state_at != old_state_at:
        shape.append("state_at")
        params["state_at"] = state_at
    if updated != old_updated:
        shape.append("updated_at")
        params["updated_at"] = updated
    for column in STAMP_COLUMNS:
        if column in stamps:
            shape.append(column)
            params[column] = stamps[column]
    for name, fill in fills.items():  # the same events give the same shape
        value = values[name]
        if name in _INDEXED:
            old = stored[_INDEXED[name]]
            if (fill and old is not None) or value == old:
                continue  # unchanged: its index is left alone
            fill = False
        shape.append(FILL + name if fill else name)
        params[name] = value
    return tuple(shape), params, state


# -- the timeline column: JSON arrays [event, at, worker, info] joined by commas --------
_TIMELINE = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
_ENCODE_STR = json.encoder.encode_basestring  # a str as JSON text
_quoted: dict[str, str] = {}  # JSON text of the event names and hostnames seen
#: event name -> (state it moves to, stamp it sets, moves to a final state, JSON text)
_EVENT_RULES: dict[str, tuple[str | None, str | None, bool, str]] = {
    name: (EVENT_STATES.get(name), STAMPS.get(name), EVENT_STATES.get(name) in FINAL_STATES,
           _ENCODE_STR(name))
    for name in (*EVENT_STATES, *STAMPS)
}


def timeline_entry(event: str, at: float, worker: str | None, info: str | None) -> str:
    """``[event, at, worker, info]`` as compact JSON (what ``_TIMELINE`` writes, faster)."""
    if type(event) is not str or (worker is not None and type(worker) is not str) or (
            info is not None and type(info) is not str) or not math.isfinite(at):
        return _TIMELINE.encode((event, at, worker, info))  # the unusual case
    name = _quoted.get(event) or _remember(event)
    host = "null" if worker is None else _quoted.get(worker) or _remember(worker)
    return f"[{name},{at!r},{host},{'null' if info is None else _ENCODE_STR(info)}]"


def _remember(text: str) -> str:
    """``text`` as JSON, remembered for the next entries (up to 4,096 texts)."""
    quoted = _ENCODE_STR(text)
    if len(_quoted) < 4096:
        _quoted[text] = quoted
    return quoted
