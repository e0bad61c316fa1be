"""The task-history interface every store implements.

A task has one :class:`TaskRecord` (its latest known state and fields) and a
timeline of :class:`EventRecord` rows.  Writers hand batches of
:class:`TaskEvent` to :meth:`History.record`; events from different
processes may arrive out of order, so a record's ``state`` is the state of
its event with the latest ``at`` (ties: the later-recorded wins), while
fields merge event by event, in arrival order: an event at or after the
record's ``updated_at`` (the latest ``at`` seen before it) overwrites the
fields it carries (non-None values only; None never clears), and an older
event only fills fields that are still None.  So fields of an older event
never overwrite those set by a newer one.  A batch gives the same record as
its events recorded one at a time.

Reads are for the dashboard and must stay fast at millions of tasks: every
listing is index-backed and paginated, and :meth:`History.counts`,
:meth:`History.throughput` and :meth:`History.runtime_histogram` read
counters maintained at write time, never a scan of all tasks.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

#: task states, in the order the dashboard lists them
STATES = ("PENDING", "RECEIVED", "STARTED", "RETRY", "SUCCESS", "FAILURE", "REVOKED", "DEAD")
#: states after which a task does nothing more on its own (retention applies)
FINAL_STATES = frozenset({"SUCCESS", "FAILURE", "REVOKED", "DEAD"})
#: event name -> state it moves the task to; other event names (dashboard
#: actions such as ``retry-requested``, ``deleted``) only add to the timeline
EVENT_STATES = {
    "sent": "PENDING",
    "received": "RECEIVED",
    "started": "STARTED",
    "retried": "RETRY",
    "succeeded": "SUCCESS",
    "failed": "FAILURE",
    "revoked": "REVOKED",
    "dead": "DEAD",
}

#: the fields a TaskEvent may set on a task record (see TaskRecord)
TASK_FIELDS = (
    "name", "queue", "lane", "eta", "args", "kwargs", "result", "exc_type", "exc_message",
    "traceback", "worker", "parent_id", "root_id", "group_id", "retry_of", "attempt",
    "runtime", "next_attempt_at",
)

#: runtime histogram bucket upper bounds in seconds (Prometheus ``le``), +Inf implied
RUNTIME_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


@dataclass(slots=True)  # not frozen: a frozen __init__ costs a worker ~1 µs per event
class TaskEvent:
    """One thing that happened to a task, to be recorded (treat it as read-only).

    ``event``: a key of :data:`EVENT_STATES` or an action name.  ``fields``:
    task fields to set (keys from :data:`TASK_FIELDS`, values str / int /
    float; args, kwargs and result already rendered to text, truncated or
    redacted by the caller).  ``info``: a short line for the timeline (an
    exception message, "redelivered", "retried from the dashboard").
    """

    task_id: str
    event: str
    at: float
    fields: dict[str, Any] = field(default_factory=dict)
    worker: str | None = None
    info: str | None = None


@dataclass(frozen=True, slots=True)
class TaskRecord:
    """The latest known state of one task (None: never reported)."""

    task_id: str
    state: str
    name: str | None
    queue: str | None
    lane: int | None
    sent_at: float | None
    received_at: float | None
    started_at: float | None
    finished_at: float | None
    updated_at: float
    eta: float | None
    args: str | None
    kwargs: str | None
    result: str | None
    exc_type: str | None
    exc_message: str | None
    traceback: str | None
    worker: str | None
    parent_id: str | None
    root_id: str | None
    group_id: str | None
    retry_of: str | None
    #: retries so far (Celery's request.retries): 0 on the first run
    attempt: int | None
    runtime: float | None
    next_attempt_at: float | None


@dataclass(frozen=True, slots=True)
class EventRecord:
    """One row of a task's timeline."""

    task_id: str
    event: str
    at: float
    worker: str | None
    info: str | None


@dataclass(frozen=True, slots=True)
class Page:
    """One page of :meth:`History.tasks`; ``has_more``: another page follows."""

    items: list[TaskRecord]
    has_more: bool


@dataclass(frozen=True, slots=True)
class WorkerBeat:
    """A worker's heartbeat; ``done`` / ``failed`` are increments since the last beat."""

    hostname: str
    at: float
    pid: int | None = None
    pool: str | None = None
    concurrency: int | None = None
    queues: tuple[str, ...] | None = None
    started_at: float | None = None
    done: int = 0
    failed: int = 0
    #: True when the worker shuts down cleanly (it is then "offline", not "lost"), False
    #: when it (re)starts; None (a beat that only carries counts) leaves it as stored
    stopped: bool | None = None


@dataclass(frozen=True, slots=True)
class WorkerRecord:
    """What the store knows about one worker."""

    hostname: str
    pid: int | None
    pool: str | None
    concurrency: int | None
    queues: tuple[str, ...]
    started_at: float | None
    last_seen: float
    done: int
    failed: int
    stopped: bool


class History(abc.ABC):
    """Task records, their timelines, counters and the worker registry."""

    # -- writing ----------------------------------------------------------------
    @abc.abstractmethod
    def record(self, events: Sequence[TaskEvent]) -> None:
        """Apply ``events`` (any tasks, any order) in one commit.

        Creates missing task records, appends each event to its task's
        timeline, merges fields and moves states as the module docstring
        says, and keeps the counters behind :meth:`counts`,
        :meth:`throughput` and :meth:`runtime_histogram` exact.
        ``sent_at`` / ``received_at`` / ``started_at`` are the ``at`` of the
        latest event of that kind; ``finished_at`` that of the latest event
        moving to a final state; ``updated_at`` the latest ``at`` seen.
        """

    @abc.abstractmethod
    def heartbeat(self, beats: Sequence[WorkerBeat]) -> None:
        """Upsert workers: non-None fields overwrite, ``done``/``failed`` add up."""

    @abc.abstractmethod
    def delete_tasks(self, task_ids: Sequence[str]) -> int:
        """Delete tasks and their timelines (counters follow); return how many."""

    @abc.abstractmethod
    def prune(self, older_than: dict[str, float], limit: int = 1000) -> int:
        """Delete at most ``limit`` tasks in ``older_than``'s states whose
        ``updated_at`` is before the epoch time given for that state; return
        how many (callers repeat while it returns ``limit``).
        """

    @abc.abstractmethod
    def forget_workers(self, seen_before: float) -> int:
        """Delete workers last seen before ``seen_before``; return how many."""

    # -- reading ----------------------------------------------------------------
    @abc.abstractmethod
    def task(self, task_id: str) -> TaskRecord | None:
        """The record of ``task_id``, or None."""

    @abc.abstractmethod
    def events(self, task_id: str) -> list[EventRecord]:
        """The timeline of ``task_id``, oldest first (by ``at``, then arrival)."""

    @abc.abstractmethod
    def tasks(
        self,
        *,
        state: str | None = None,
        queue: str | None = None,
        name: str | None = None,
        root_id: str | None = None,
        search: str | None = None,
        newest_first: bool = True,
        offset: int = 0,
        limit: int = 50,
    ) -> Page:
        """Tasks matching every filter given, in the order the store first recorded
        them (newest first unless ``newest_first`` is False).

        A task keeps its place when later events update it, so pages stay put
        while tasks progress; a batch records its new tasks in task-id order.

        ``search`` matches a task id prefix, or a substring of args / kwargs
        (bound parameters only; the substring search may scan, the others
        must not).
        """

    @abc.abstractmethod
    def counts(self) -> dict[str, int]:
        """Tasks per state, every state of :data:`STATES` present (0 if none)."""

    @abc.abstractmethod
    def names(self) -> list[str]:
        """Distinct task names seen, sorted (for the dashboard's filter)."""

    @abc.abstractmethod
    def throughput(self, since: float) -> list[tuple[int, int, int]]:
        """``(minute, succeeded, failed)`` per minute from ``since`` on, oldest
        first; ``minute`` is epoch seconds // 60; minutes with neither are left
        out; ``failed`` counts FAILURE and DEAD.
        """

    @abc.abstractmethod
    def runtime_histogram(self) -> tuple[list[tuple[float, int]], int, float]:
        """``(buckets, count, sum)`` of task runtimes ever recorded (Prometheus
        style: ``buckets`` are cumulative ``(le, count)`` for
        :data:`RUNTIME_BUCKETS` then ``float("inf")``).
        """

    @abc.abstractmethod
    def workers(self) -> list[WorkerRecord]:
        """Every known worker, sorted by hostname."""

    def close(self) -> None:  # noqa: B027 (optional hook, nothing to release by default)
        """Release what this object holds (connections are the store's)."""
