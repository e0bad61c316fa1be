"""The Celery signal handlers that feed task history and the worker registry.

Each handler finds the app's :class:`~.recorder.AppHistory` and buffers one
event (a :class:`~gorelay_kombu.history.TaskEvent` once flushed); it never
raises into Celery (a history problem is logged, the task goes on).  The
tasks each worker did and failed are counted from those events when the
recorder flushes them, not per task here.
"""

from __future__ import annotations

import functools
import logging
import sys
import time
import traceback as tb
from collections.abc import Callable
from types import FrameType
from typing import Any

from celery import signals
from celery.exceptions import MaxRetriesExceededError

from ..priority import lane_for_priority
from . import registry
from .recorder import AppHistory, app_history, epoch

logger = logging.getLogger(__name__)

#: perf_counter at task start, by task id (this process)
_started: dict[str, float] = {}


def _safe(handler: Callable[..., None]) -> Callable[..., None]:
    @functools.wraps(handler)
    def guarded(*args: Any, **kwargs: Any) -> None:
        try:
            handler(*args, **kwargs)
        except Exception:
            logger.warning("gorelay: history handler %s failed", handler.__name__,
                           exc_info=True)
    return guarded


def _history(app: Any) -> AppHistory | None:
    found = app_history(app)
    return found if found.recorder is not None else None


def _add(h: AppHistory, task_id: str, event: str, fields: dict[str, Any],
         worker: str | None = None, info: str | None = None) -> None:
    """Buffer one event; ``fields``: the task fields it gives (None: not known here)."""
    assert h.recorder is not None
    if worker is not None and "worker" not in fields:
        fields["worker"] = worker
    if None in fields.values():
        fields = {k: v for k, v in fields.items() if v is not None}
    h.recorder.add(task_id, event, time.time(), fields, worker, info)


@_safe
def on_publish(sender: Any = None, body: Any = None, exchange: str = "", routing_key: str = "",
               headers: dict[str, Any] | None = None, properties: dict[str, Any] | None = None,
               **_: Any) -> None:
    h = _history(_publishing_app())
    if h is None or not headers or "id" not in headers:
        return
    if headers.get("gorelay_outbox"):
        return  # may still be rolled back: the task enters history when a worker receives it
    name = headers.get("task") or str(sender)
    args, kwargs = (body[0], body[1]) if isinstance(body, (list, tuple)) and len(body) >= 2 \
        else (None, None)
    _add(h, headers["id"], "sent", {
        "name": name, "queue": routing_key or exchange,
        "lane": lane_for_priority((properties or {}).get("priority")),
        "eta": epoch(headers.get("eta")), "attempt": headers.get("retries") or 0,
        "args": h.render(name, "args", args), "kwargs": h.render(name, "kwargs", kwargs),
        "parent_id": headers.get("parent_id"), "root_id": headers.get("root_id"),
        "group_id": headers.get("group")})


@_safe
def on_received(sender: Any = None, request: Any = None, **_: Any) -> None:
    h = _history(sender.app)
    if h is None or request is None:
        return
    redelivered = bool((request.delivery_info or {}).get("redelivered"))
    _add(h, request.id, "received", {"name": request.name}, sender.hostname,
         "redelivered" if redelivered else None)


@_safe
def on_prerun(sender: Any = None, task_id: str = "", task: Any = None, **_: Any) -> None:
    h = _history(sender.app)
    if h is None:
        return
    _started[task_id] = time.perf_counter()
    request = sender.request
    _add(h, task_id, "started", {"name": sender.name, "attempt": request.retries or 0},
         request.hostname)


@_safe
def on_retry(sender: Any = None, request: Any = None, reason: Any = None, einfo: Any = None,
             **_: Any) -> None:
    h = _history(sender.app)
    if h is None or request is None:
        return
    exc = getattr(reason, "exc", None) or reason
    when = getattr(reason, "when", None)
    next_at = epoch(when) if not isinstance(when, (int, float)) else time.time() + when
    attempt = (request.retries or 0) + 1
    _add(h, request.id, "retried", {
        "exc_type": type(exc).__name__, "exc_message": str(exc),
        "traceback": getattr(einfo, "traceback", None), "next_attempt_at": next_at,
        "runtime": _runtime(request.id),
    }, request.hostname, f"attempt {attempt} failed: {type(exc).__name__}: {exc}")


@_safe
def on_success(sender: Any = None, result: Any = None, **_: Any) -> None:
    h = _history(sender.app)
    if h is None:
        return
    request = sender.request
    _add(h, request.id, "succeeded", {"result": h.render(sender.name, "result", result),
                                      "runtime": _runtime(request.id)}, request.hostname)


@_safe
def on_failure(sender: Any = None, task_id: str = "", exception: BaseException | None = None,
               einfo: Any = None, traceback: Any = None, **_: Any) -> None:
    h = _history(sender.app)
    if h is None:
        return
    request = sender.request
    hostname = request.hostname if request.id == task_id else None
    retries = (request.retries or 0) if request.id == task_id else 0
    limit = sender.max_retries
    dead = isinstance(exception, MaxRetriesExceededError) or (
        limit is not None and limit > 0 and retries >= limit)
    text = getattr(einfo, "traceback", None)
    if text is None and exception is not None:
        text = "".join(tb.format_exception(type(exception), exception, traceback))
    _add(h, task_id, "dead" if dead else "failed", {
        "exc_type": type(exception).__name__, "exc_message": str(exception),
        "traceback": text, "runtime": _runtime(task_id),
    }, hostname, f"{type(exception).__name__}: {exception}" + (
        f" (out of retries after {retries})" if dead else ""))


@_safe
def on_revoked(sender: Any = None, request: Any = None, terminated: bool = False,
               expired: bool = False, **_: Any) -> None:
    h = _history(sender.app)
    if h is None or request is None:
        return
    why = "expired" if expired else "terminated" if terminated else "revoked"
    _add(h, request.id, "revoked", {"name": getattr(sender, "name", None)},
         getattr(request, "hostname", None), why)


def _publishing_app() -> Any:
    """The app whose ``send_task_message`` is publishing (the signal does not say).

    Celery's sender is a closure over its ``AMQP`` object; its frame is a few
    calls up (Signal.send, :func:`_safe`, the handler).  Falls back to the
    current app.
    """
    frame: FrameType | None = sys._getframe(1)
    for _ in range(8):
        if frame is None:
            break
        if frame.f_code.co_name == "send_task_message":
            amqp = frame.f_locals.get("amqp")
            if amqp is not None:
                return amqp.app
        frame = frame.f_back
    from celery import current_app

    return current_app._get_current_object()


def _runtime(task_id: str) -> float | None:
    start = _started.pop(task_id, None)
    return None if start is None else time.perf_counter() - start


def connect() -> None:
    """Connect every handler (idempotent)."""
    for signal, handler in (
        (signals.before_task_publish, on_publish),
        (signals.task_received, on_received),
        (signals.task_prerun, on_prerun),
        (signals.task_retry, on_retry),
        (signals.task_success, on_success),
        (signals.task_failure, on_failure),
        (signals.task_revoked, on_revoked),
    ):
        signal.connect(handler, weak=False, dispatch_uid=f"gorelay-history-{handler.__name__}")
    registry.connect()
