"""Task history from Celery signals, written in batches to the app's gorelay store.

Connected once per process by :mod:`gorelay_kombu.compat.hooks`; active for
an app whose ``result_backend`` or ``broker_url`` is a gorelay URL (the
backend's store wins when both are).  Producers record ``sent``; workers
record ``received``, ``started``, ``retried``, ``succeeded``, ``failed``,
``revoked`` and ``dead`` (a failure once ``request.retries`` reached the
task's ``max_retries``, or ``MaxRetriesExceededError``).

Signal handlers only append to an in-memory buffer; one thread per process
flushes it with :meth:`History.record` every :data:`FLUSH_SECONDS` (or as
soon as :data:`FLUSH_EVENTS` wait), so history costs a task a few
microseconds, not a commit, and one batch holds all the events of most
tasks (:meth:`History.record` writes each task once per batch).  History is
a record, not the queue: a process killed with SIGKILL loses at most its
last unflushed fraction of a second of events, never a task.

Celery settings (``app.conf``):

* ``gorelay_history`` (default True): False records nothing.
* ``gorelay_history_args``: ``"truncated"`` (default; args, kwargs and
  results as JSON cut to ``gorelay_history_preview_chars``, default 200,
  ending in "…"), ``"full"`` or ``"none"``.  They often hold e-mail
  addresses and tokens.
* ``gorelay_history_redact``: a callable (or "module:function")
  ``redact(task_name, field, value) -> value`` applied first, ``field``
  being ``"args"``, ``"kwargs"`` or ``"result"``.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from datetime import datetime
from typing import Any

from kombu.utils.imports import symbol_by_name

from ..errors import InvalidOption
from ..history import TaskEvent, WorkerBeat
from ..storage import Store
from .stores import gorelay_url, shared_store, store_options

logger = logging.getLogger(__name__)

FLUSH_SECONDS = 0.25
#: the background flusher writes workers' done / failed counts at most this often
#: (each write is a transaction of its own; an explicit flush writes them at once)
COUNTS_SECONDS = 1.0
FLUSH_EVENTS = 5000
#: events kept while the store is unreachable; older ones are dropped beyond it
MAX_BUFFER = 100_000
ARGS_MODES = ("truncated", "full", "none")


class Recorder:
    """The history writer of one process for one store."""

    def __init__(self, url: str, options: dict[str, Any]) -> None:
        self.url = url
        self.options = options
        self._reset()
        _every_recorder.add(self)

    def _reset(self) -> None:
        """Empty buffers, fresh locks, no thread (also in a forked child: its parent
        writes what it had buffered, and a lock held at the fork stays held)."""
        #: buffered events as plain tuples (TaskEvent's fields): the garbage collector
        #: need not visit them while they wait, which a busy worker would pay for
        self._events: deque[tuple[Any, ...]] = deque()
        self._beats: deque[WorkerBeat] = deque()
        self._counts_written = 0.0  # monotonic time of the last heartbeat write
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    @property
    def store(self) -> Store:
        return shared_store(self.url, self.options)

    def add(self, task_id: str, event: str, at: float, fields: dict[str, Any],
            worker: str | None = None, info: str | None = None) -> None:
        """Buffer one event (the fields of a :class:`TaskEvent`)."""
        events = self._events
        events.append((task_id, event, at, fields, worker, info))
        waiting = len(events)
        if waiting > MAX_BUFFER:
            events.popleft()
        if self._thread is None:
            self._ensure_thread()
        if waiting >= FLUSH_EVENTS and not self._wake.is_set():  # (set() takes a lock)
            self._wake.set()

    def beat(self, beat: WorkerBeat) -> None:
        self._beats.append(beat)
        if self._thread is None:
            self._ensure_thread()

    def _ensure_thread(self) -> None:
        with self._lock:  # a forked child starts without one (_reset)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="gorelay-history", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            self._wake.wait(FLUSH_SECONDS)
            self._wake.clear()
            self.flush(counts=False)

    def flush(self, counts: bool = True) -> None:
        """Write what is buffered now (the caller's thread; safe beside the flusher).

        ``counts=False`` (the flusher): beats that only carry done / failed counts
        wait for the next write of beats, at most :data:`COUNTS_SECONDS` away.
        """
        with self._lock:
            raw = _take(self._events)
            events = [TaskEvent(*e) for e in raw]
            beats = _take(self._beats)
            if not events and not beats:
                return
            written: list[TaskEvent] = []
            try:  # history must never break a task or a worker
                history = self.store.history()
                if events:
                    history.record(events)
                written = events
                beats += finished_beats(events)  # counted once the events are in
                now = time.monotonic()
                if beats and (counts or now - self._counts_written >= COUNTS_SECONDS
                              or not all(map(_counts_only, beats))):
                    history.heartbeat(merge_beats(beats))
                    self._counts_written = now
                elif beats:
                    self._beats.extendleft(reversed(merge_beats(beats)))
            except Exception:
                logger.warning("gorelay: could not write %d history event(s) to %s; "
                               "keeping them for the next try",
                               len(events) - len(written) + len(beats), self.url,
                               exc_info=True)
                if not written:
                    self._events.extendleft(reversed(raw))
                self._beats.extendleft(reversed(beats))
                time.sleep(FLUSH_SECONDS)


_BEAT_FIELDS = ("pid", "pool", "concurrency", "queues", "started_at", "stopped")
#: event -> (done, failed) it adds to its worker's counts
_FINISHED = {"succeeded": (1, 0), "failed": (0, 1), "dead": (0, 1)}


def _counts_only(beat: WorkerBeat) -> bool:
    return all(getattr(beat, name) is None for name in _BEAT_FIELDS)


def finished_beats(events: list[TaskEvent]) -> list[WorkerBeat]:
    """Tasks done / failed per worker among ``events``, as beats that only carry counts
    (the workers' counts follow the events their tasks recorded)."""
    per: dict[str, list[Any]] = {}
    for e in events:
        counts = _FINISHED.get(e.event)
        if counts is None or not e.worker:
            continue
        entry = per.get(e.worker)
        if entry is None:
            per[e.worker] = [e.at, *counts]
        else:
            entry[0] = max(entry[0], e.at)
            entry[1] += counts[0]
            entry[2] += counts[1]
    return [WorkerBeat(host, at, done=done, failed=failed)
            for host, (at, done, failed) in per.items()]


def merge_beats(beats: list[WorkerBeat]) -> list[WorkerBeat]:
    """One beat per worker: counts added up, other fields from the latest beat giving them."""
    merged: dict[str, dict[str, Any]] = {}
    for beat in beats:
        m = merged.get(beat.hostname)
        if m is None:
            m = merged[beat.hostname] = {"hostname": beat.hostname, "at": beat.at,
                                         "done": 0, "failed": 0}
        elif beat.at > m["at"]:
            m["at"] = beat.at
        m["done"] += beat.done
        m["failed"] += beat.failed
        for name in _BEAT_FIELDS:
            value = getattr(beat, name)
            if value is not None:
                m[name] = value
    return [WorkerBeat(**m) for m in merged.values()]


def _take(buffer: deque[Any]) -> list[Any]:
    """What ``buffer`` holds now, oldest first (appends from other threads stay)."""
    pop = buffer.popleft
    return [pop() for _ in range(len(buffer))]


class AppHistory:
    """What the signal handlers need to know about one Celery app."""

    def __init__(self, app: Any) -> None:
        conf = app.conf
        self.recorder: Recorder | None = None
        if not conf.get("gorelay_history", True):
            return
        backend = str(conf.get("result_backend") or "")
        broker = str(conf.get("broker_url") or "")
        if backend.startswith("gorelay"):
            url, options, setting = backend, conf.get("result_backend_transport_options"), \
                "result_backend_transport_options"
        elif broker.startswith("gorelay"):
            url, options, setting = broker, conf.get("broker_transport_options"), \
                "broker_transport_options"
        else:
            return
        url = gorelay_url(url)
        self.recorder = _recorder(url, store_options(url, options, setting))
        self.mode = conf.get("gorelay_history_args") or "truncated"
        if self.mode not in ARGS_MODES:
            raise InvalidOption(
                f"gorelay_history_args={self.mode!r}; use one of {', '.join(ARGS_MODES)}.")
        self.chars = int(conf.get("gorelay_history_preview_chars") or 200)
        self.encode = _ENCODER.encode
        redact = conf.get("gorelay_history_redact")
        self.redact: Callable[[str, str, Any], Any] | None = (
            symbol_by_name(redact) if isinstance(redact, str) else redact)

    def render(self, name: str, field: str, value: Any) -> str | None:
        """``value`` as stored in history: redacted, JSON, truncated per the mode."""
        if self.mode == "none":
            return None
        if self.redact is not None:
            value = self.redact(name, field, value)
        try:
            text = "null" if value is None else self.encode(value)
        except (TypeError, ValueError):
            text = json.dumps(repr(value))
        if self.mode == "truncated" and len(text) > self.chars:
            text = text[: self.chars] + "…"
        return text


#: json.dumps(value, default=repr, ensure_ascii=False), without a new encoder per call
_ENCODER = json.JSONEncoder(default=repr, ensure_ascii=False)
_recorders: dict[tuple[str, tuple[tuple[str, str], ...]], Recorder] = {}
_recorders_lock = threading.Lock()
_every_recorder: weakref.WeakSet[Recorder] = weakref.WeakSet()  # reset in a forked child


def _recorder(url: str, options: dict[str, Any]) -> Recorder:
    key = (url, tuple(sorted((k, str(v)) for k, v in options.items())))
    with _recorders_lock:
        if key not in _recorders:
            _recorders[key] = Recorder(url, options)
        return _recorders[key]


def app_history(app: Any) -> AppHistory:
    """The history settings of ``app``, kept on the app (the signal handlers ask per signal)."""
    found: AppHistory | None = app.__dict__.get("_gorelay_history")
    if found is None:
        found = app.__dict__["_gorelay_history"] = AppHistory(app)
    return found


def flush_all() -> None:
    """Write every buffered event of this process now (tests, shutdown)."""
    for recorder in list(_recorders.values()):
        recorder.flush()


def _after_fork_in_child() -> None:
    global _recorders_lock
    _recorders_lock = threading.Lock()
    for recorder in list(_every_recorder):
        recorder._reset()


atexit.register(flush_all)
os.register_at_fork(after_in_child=_after_fork_in_child)


def epoch(value: Any) -> float | None:
    """An ETA header (ISO 8601 text or datetime) as epoch seconds."""
    if value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.timestamp() if isinstance(value, datetime) else None
