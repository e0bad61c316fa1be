"""What the dashboard reads from the store: cheap, index-backed, paginated.

Every page and the live feed go through :class:`Reader`.  The overview
reads counters (``History.counts``, ``throughput``), ``Store.queue_stats``
and the worker registry; none of them scans the tasks, so it costs the same
with a thousand tasks or a million.  :meth:`Reader.stamp` digests what the
overview shows; the live feed pushes a change when the digest changes.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from typing import Any

from ..history import STATES, History, TaskRecord, WorkerRecord
from ..priority import LANE_NAMES, NORMAL, lane_for_priority
from ..storage import QueueStats, Store
from .settings import DashboardSettings

#: minutes of throughput the overview charts
THROUGHPUT_MINUTES = 60
#: most dead letters listed per queue (they are rare; the rest stay counted)
DEAD_LETTERS_SHOWN = 100
PREVIEW_BYTES = 600


def is_internal_queue(name: str) -> bool:
    """Celery's own control (``*.pidbox``) and event (``celeryev.*``) queues."""
    return name.endswith(".pidbox") or name.startswith("celeryev.")


@dataclass(frozen=True)
class LaneRow:
    lane: int
    name: str
    ready: int
    scheduled: int
    leased: int
    dead: int
    oldest_ready_at: float | None


@dataclass
class QueueRow:
    """One queue with its lanes and totals."""

    queue: str
    lanes: list[LaneRow] = field(default_factory=list)

    @property
    def ready(self) -> int:
        return sum(lane.ready for lane in self.lanes)

    @property
    def scheduled(self) -> int:
        return sum(lane.scheduled for lane in self.lanes)

    @property
    def leased(self) -> int:
        return sum(lane.leased for lane in self.lanes)

    @property
    def dead(self) -> int:
        return sum(lane.dead for lane in self.lanes)

    @property
    def oldest_ready_at(self) -> float | None:
        times = [lane.oldest_ready_at for lane in self.lanes if lane.oldest_ready_at]
        return min(times) if times else None


@dataclass(frozen=True)
class WorkerView:
    """A worker and what the dashboard makes of its last heartbeat."""

    record: WorkerRecord
    #: "live", "lost" (stopped beating without a clean shutdown) or "offline"
    status: str


@dataclass(frozen=True)
class DeadLetter:
    """A message the broker could not deliver (poison), as stored."""

    queue: str
    id: int
    reason: str
    lane: int
    task_id: str | None
    task_name: str | None
    size: int
    preview: str


@dataclass(frozen=True)
class Overview:
    counts: dict[str, int]
    queues: list[QueueRow]
    throughput: list[tuple[int, int, int]]
    workers: list[WorkerView]
    at: float

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def waiting(self) -> int:
        return sum(q.ready + q.scheduled for q in self.queues)

    @property
    def oldest_ready_at(self) -> float | None:
        times = [q.oldest_ready_at for q in self.queues if q.oldest_ready_at]
        return min(times) if times else None

    @property
    def live_workers(self) -> int:
        return sum(1 for w in self.workers if w.status == "live")

    def as_json(self) -> dict[str, Any]:
        return {
            "at": self.at,
            "counts": self.counts,
            "total": self.total,
            "waiting": self.waiting,
            "oldest_ready_at": self.oldest_ready_at,
            "queues": [queue_json(q) for q in self.queues],
            "throughput": [{"minute": m, "succeeded": s, "failed": f}
                           for m, s, f in self.throughput],
            "workers": [worker_json(w) for w in self.workers],
            "live_workers": self.live_workers,
        }


class Reader:
    """Read-only queries over one store and its history."""

    def __init__(self, store: Store, history: History, settings: DashboardSettings) -> None:
        self.store = store
        self.history = history
        self.settings = settings

    def counts(self) -> dict[str, int]:
        found = self.history.counts()
        return {state: int(found.get(state, 0)) for state in STATES}

    def queues(self, include_internal: bool | None = None) -> list[QueueRow]:
        if include_internal is None:
            include_internal = self.settings.show_internal_queues
        return group_queues(self.store.queue_stats(), include_internal)

    def workers(self, now: float | None = None) -> list[WorkerView]:
        now = time.time() if now is None else now
        lost_after = self.settings.worker_lost_after
        views = []
        for w in self.history.workers():
            if w.stopped:
                status = "offline"
            elif now - w.last_seen > lost_after:
                status = "lost"
            else:
                status = "live"
            views.append(WorkerView(w, status))
        return views

    def throughput(self, now: float | None = None,
                   minutes: int = THROUGHPUT_MINUTES) -> list[tuple[int, int, int]]:
        """``(minute, succeeded, failed)`` for each of the last ``minutes``, zeros included."""
        now = time.time() if now is None else now
        last = int(now // 60)
        first = last - minutes + 1
        found = {m: (s, f) for m, s, f in self.history.throughput(first * 60.0)}
        return [(m, *found.get(m, (0, 0))) for m in range(first, last + 1)]

    def overview(self) -> Overview:
        now = time.time()
        return Overview(self.counts(), self.queues(), self.throughput(now),
                        self.workers(now), now)

    def stamp(self) -> str:
        """A short digest of what the pages show; it changes when the store does."""
        now = time.time()
        stats = [(s.queue, s.lane, s.ready, s.scheduled, s.leased, s.dead)
                 for s in self.store.queue_stats()]
        workers = [(w.record.hostname, w.status, w.record.done, w.record.failed)
                   for w in self.workers(now)]
        text = json.dumps([self.counts(), stats, workers, int(now // 60)])
        return hashlib.sha1(text.encode()).hexdigest()[:16]

    def task(self, task_id: str) -> TaskRecord | None:
        return self.history.task(task_id)

    def dead_letters(self, queues: list[QueueRow] | None = None) -> list[DeadLetter]:
        """The broker's dead letters of every queue holding some (at most 100 per queue)."""
        rows: list[DeadLetter] = []
        for q in queues if queues is not None else self.queues(include_internal=True):
            if q.dead:
                found = self.store.dead_letters(q.queue)[:DEAD_LETTERS_SHOWN]
                rows.extend(decode_dead_letter(q.queue, mid, reason, payload)
                            for mid, reason, payload in found)
        return rows

    def dead_letter(self, queue: str, message_id: int) -> DeadLetter | None:
        for mid, reason, payload in self.store.dead_letters(queue):
            if mid == message_id:
                return decode_dead_letter(queue, mid, reason, payload)
        return None


def group_queues(stats: list[QueueStats], include_internal: bool) -> list[QueueRow]:
    rows: dict[str, QueueRow] = {}
    for s in stats:
        if not include_internal and is_internal_queue(s.queue):
            continue
        row = rows.setdefault(s.queue, QueueRow(s.queue))
        row.lanes.append(LaneRow(s.lane, LANE_NAMES.get(s.lane, str(s.lane)), s.ready,
                                 s.scheduled, s.leased, s.dead, s.oldest_ready_at))
    return sorted(rows.values(), key=lambda r: r.queue)


def decode_dead_letter(queue: str, message_id: int, reason: str, payload: bytes) -> DeadLetter:
    """What can be read of a poison message: task id and name if its headers decode."""
    task_id = task_name = None
    lane = NORMAL
    try:
        message = json.loads(payload)
        headers = message.get("headers") or {}
        task_id = _text(headers.get("id"))
        task_name = _text(headers.get("task"))
        lane = lane_for_priority((message.get("properties") or {}).get("priority"))
    except (ValueError, AttributeError, TypeError):
        pass
    preview = payload[:PREVIEW_BYTES].decode("utf-8", errors="replace")
    if len(payload) > PREVIEW_BYTES:
        preview += "…"
    return DeadLetter(queue, message_id, reason, lane, task_id, task_name, len(payload), preview)


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def queue_json(q: QueueRow) -> dict[str, Any]:
    return {
        "queue": q.queue, "ready": q.ready, "scheduled": q.scheduled, "leased": q.leased,
        "dead": q.dead, "oldest_ready_at": q.oldest_ready_at,
        "lanes": [{"lane": lane.name, "ready": lane.ready, "scheduled": lane.scheduled,
                   "leased": lane.leased, "dead": lane.dead,
                   "oldest_ready_at": lane.oldest_ready_at} for lane in q.lanes],
    }


def worker_json(w: WorkerView) -> dict[str, Any]:
    r = w.record
    return {
        "hostname": r.hostname, "status": w.status, "pid": r.pid, "pool": r.pool,
        "concurrency": r.concurrency, "queues": list(r.queues), "started_at": r.started_at,
        "last_seen": r.last_seen, "done": r.done, "failed": r.failed, "stopped": r.stopped,
    }


def task_json(t: TaskRecord) -> dict[str, Any]:
    return {name: getattr(t, name) for name in t.__dataclass_fields__}


def dead_letter_json(d: DeadLetter) -> dict[str, Any]:
    return {"queue": d.queue, "id": d.id, "reason": d.reason, "lane": LANE_NAMES.get(d.lane),
            "task_id": d.task_id, "task_name": d.task_name, "size": d.size,
            "preview": d.preview}
