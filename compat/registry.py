"""The worker registry: workers heartbeat into the store, no broadcast needed.

The main process of each ``celery worker`` on a gorelay app beats every
``gorelay_worker_heartbeat`` seconds (default 5) with its hostname, pid,
pool, concurrency and queues, and once more with ``stopped=True`` on a
clean shutdown.  Tasks done and failed are counted where they run (pool
child processes included) and added with the history flushes.  The
dashboard calls a worker *lost* when it has not beaten for three
intervals and did not stop cleanly (a SIGKILL, a crashed machine).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import TYPE_CHECKING, Any

from celery import signals

from ..history import WorkerBeat, WorkerRecord

if TYPE_CHECKING:
    from .recorder import AppHistory

logger = logging.getLogger(__name__)

DEFAULT_HEARTBEAT = 5.0
DAY = 86400.0
#: GoRelay's retention: completed tasks 7 days, failed and dead 30
DEFAULT_RETENTION = {"SUCCESS": 7 * DAY, "REVOKED": 7 * DAY, "FAILURE": 30 * DAY,
                     "DEAD": 30 * DAY}
#: seconds between two upkeep rounds (history pruning, expired results)
UPKEEP_SECONDS = 60.0
#: workers not seen for this long leave the registry
FORGET_WORKERS_AFTER = 7 * DAY


def heartbeat_interval(app: Any) -> float:
    return float(app.conf.get("gorelay_worker_heartbeat") or DEFAULT_HEARTBEAT)


def worker_status(worker: WorkerRecord, interval: float = DEFAULT_HEARTBEAT,
                  now: float | None = None) -> str:
    """``"online"``, ``"offline"`` (stopped cleanly) or ``"lost"`` (silent for three
    heartbeat intervals without a clean stop: killed, or its machine is gone)."""
    if worker.stopped:
        return "offline"
    silent = (time.time() if now is None else now) - worker.last_seen
    return "lost" if silent > 3 * interval else "online"


def retention(app: Any) -> dict[str, float]:
    """Seconds each final state is kept: ``gorelay_history_retention`` over the defaults."""
    return {**DEFAULT_RETENTION, **(app.conf.get("gorelay_history_retention") or {})}


class _Beater:
    """The heartbeat thread of one worker's main process."""

    def __init__(self, consumer: Any, h: AppHistory) -> None:
        self.h = h
        self.consumer = consumer
        self.interval = heartbeat_interval(consumer.app)
        self.started_at = time.time()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="gorelay-heartbeat", daemon=True)

    def beat(self, stopped: bool = False) -> None:
        consumer = self.consumer
        controller = getattr(consumer, "controller", None)
        pool = getattr(controller, "pool_cls", None)
        pool_name = getattr(pool, "__module__", str(pool or "")).rsplit(".", 1)[-1]
        queues = tuple(sorted(q.name for q in consumer.app.amqp.queues.consume_from.values()))
        assert self.h.recorder is not None
        self.h.recorder.beat(WorkerBeat(
            consumer.hostname, time.time(), pid=os.getpid(), pool=pool_name,
            concurrency=getattr(controller, "concurrency", None), queues=queues,
            started_at=self.started_at, stopped=stopped))
        self.h.recorder.flush()

    def upkeep(self) -> None:
        """Prune history past its retention and expired results, in small batches."""
        assert self.h.recorder is not None
        store = self.h.recorder.store
        now = time.time()
        cutoffs = {state: now - seconds for state, seconds in retention(self.consumer.app).items()}
        history = store.history()
        while history.prune(cutoffs, 1000) == 1000 and not self.stopping.is_set():
            time.sleep(0.05)  # let task writers in between batches
        history.forget_workers(now - FORGET_WORKERS_AFTER)
        store.kv_purge_expired()

    def _run(self) -> None:
        next_upkeep = time.monotonic()
        while not self.stopping.wait(self.interval):
            try:
                self.beat()
                if time.monotonic() >= next_upkeep:
                    next_upkeep = time.monotonic() + UPKEEP_SECONDS
                    self.upkeep()
            except Exception:  # never let the registry take a worker down
                logger.warning("gorelay: worker heartbeat failed", exc_info=True)


_beaters: dict[int, _Beater] = {}


def _on_ready(sender: Any = None, **_: Any) -> None:
    from .recorder import app_history

    h = app_history(sender.app)
    if h.recorder is None:
        return
    beater = _beaters[id(sender)] = _Beater(sender, h)
    beater.beat()
    beater.thread.start()


def _on_shutdown(sender: Any = None, **_: Any) -> None:
    for key, beater in list(_beaters.items()):
        beater.stopping.set()
        try:
            beater.beat(stopped=True)
        except Exception:
            pass
        _beaters.pop(key, None)


def _on_child_exit(**_: Any) -> None:
    from .recorder import flush_all

    flush_all()


def connect() -> None:
    signals.worker_ready.connect(_on_ready, weak=False, dispatch_uid="gorelay-registry-ready")
    signals.worker_shutdown.connect(_on_shutdown, weak=False,
                                    dispatch_uid="gorelay-registry-shutdown")
    signals.worker_process_shutdown.connect(_on_child_exit, weak=False,
                                            dispatch_uid="gorelay-registry-child-exit")
