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
microseconds, not a commit.  History is a record, not the queue: a process
killed with SIGKILL loses at most its last unflushed fraction of a second
of events, never a task.

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
from dataclasses import replace
from datetime import datetime
from typing import Any

from kombu.utils.imports import symbol_by_name

from ..errors import InvalidOption
from ..history import TaskEvent, WorkerBeat
from ..storage import Store
from .stores import gorelay_url, shared_store, store_options

logger = logging.getLogger(__name__)

FLUSH_SECONDS = 0.1
FLUSH_EVENTS = 500
#: events kept while the store is unreachable; older ones are dropped beyond it
MAX_BUFFER = 100_000
ARGS_MODES = ("truncated", "full", "none")


class Recorder:
    """The history writer of one process for one store."""

    def __init__(self, url: str, options: dict[str, Any]) -> None:
        self.url = url
        self.options = options
        self._events: deque[TaskEvent] = deque()
        self._beats: deque[WorkerBeat] = deque()
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pid = 0

    @property
    def store(self) -> Store:
        return shared_store(self.url, self.options)

    def add(self, event: TaskEvent) -> None:
        self._events.append(event)
        if len(self._events) > MAX_BUFFER:
            self._events.popleft()
        self._ensure_thread()
        if len(self._events) >= FLUSH_EVENTS:
            self._wake.set()

    def beat(self, beat: WorkerBeat) -> None:
        self._beats.append(beat)
        self._ensure_thread()

    def _ensure_thread(self) -> None:
        if self._pid == os.getpid() and self._thread is not None:
            return
        with self._lock:
            if self._pid != os.getpid() or self._thread is None:
                self._pid = os.getpid()
                self._thread = threading.Thread(
                    target=self._run, name="gorelay-history", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            self._wake.wait(FLUSH_SECONDS)
            self._wake.clear()
            self.flush()

    def flush(self) -> None:
        """Write what is buffered now (the caller's thread; safe beside the flusher)."""
        with self._lock:
            events = _take(self._events)
            beats = _take(self._beats)
            if not events and not beats:
                return
            try:
                history = self.store.history()
                if events:
                    history.record(events)
                if beats:
                    history.heartbeat(merge_beats(beats))
            except Exception:  # history must never break a task or a worker
                logger.warning("gorelay: could not write %d history event(s) to %s; "
                               "keeping them for the next try", len(events), self.url,
                               exc_info=True)
                self._events.extendleft(reversed(events))
                self._beats.extendleft(reversed(beats))
                time.sleep(FLUSH_SECONDS)


def merge_beats(beats: list[WorkerBeat]) -> list[WorkerBeat]:
    """One beat per worker: counts added up, other fields from the latest beat giving them."""
    merged: dict[str, WorkerBeat] = {}
    for beat in beats:
        old = merged.get(beat.hostname)
        if old is None:
            merged[beat.hostname] = beat
            continue
        newer = {f: getattr(beat, f) for f in ("pid", "pool", "concurrency", "queues",
                                                 "started_at") if getattr(beat, f) is not None}
        merged[beat.hostname] = replace(
            old, **newer, at=max(old.at, beat.at), done=old.done + beat.done,
            failed=old.failed + beat.failed,
            stopped=old.stopped if beat.stopped is None else beat.stopped)
    return list(merged.values())


def _take(buffer: deque[Any]) -> list[Any]:
    items = []
    while buffer:
        items.append(buffer.popleft())
    return items


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
            text = json.dumps(value, default=repr, ensure_ascii=False)
        except (TypeError, ValueError):
            text = json.dumps(repr(value))
        if self.mode == "truncated" and len(text) > self.chars:
            text = text[: self.chars] + "…"
        return text


_recorders: dict[tuple[str, tuple[tuple[str, str], ...]], Recorder] = {}
_recorders_lock = threading.Lock()
_apps: weakref.WeakKeyDictionary[Any, AppHistory] = weakref.WeakKeyDictionary()


def _recorder(url: str, options: dict[str, Any]) -> Recorder:
    key = (url, tuple(sorted((k, str(v)) for k, v in options.items())))
    with _recorders_lock:
        if key not in _recorders:
            _recorders[key] = Recorder(url, options)
        return _recorders[key]


def app_history(app: Any) -> AppHistory:
    """The (cached) history settings of ``app``."""
    found = _apps.get(app)
    if found is None:
        found = _apps[app] = AppHistory(app)
    return found


def flush_all() -> None:
    """Write every buffered event of this process now (tests, shutdown)."""
    for recorder in list(_recorders.values()):
        recorder.flush()


atexit.register(flush_all)


def epoch(value: Any) -> float | None:
    """An ETA header (ISO 8601 text or datetime) as epoch seconds."""
    if value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.timestamp() if isinstance(value, datetime) else None
