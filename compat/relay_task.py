"""One Relay topic as one Celery task: decode, run with a time limit, retry or die.

The task a topic becomes is a plain Celery task named after the topic, so
``celery -A app:relay worker`` runs it like any other.  It takes one
argument, the payload as JSON-ready data (see :mod:`.relay_payloads`), and:

* decodes it into the registered payload type and calls the handler, under
  the topic's ``timeout`` (see :mod:`.relay_timeout`);
* on an exception its retry policy retries, calls Celery's own
  ``task.retry(countdown=policy.delay(request.retries), exc=exc)``, so the
  retry is a normal Celery retry (history shows RETRY, the message waits in
  the store until due) and the planned delay travels in the message header
  :data:`RETRY_DELAY_HEADER` (``request.gorelay_retry_delay`` in the next
  attempt);
* on a final failure (out of retries, or an exception the policy does not
  retry) it keeps the message for re-drive under ``relay:dead:<task_id>``
  (see :mod:`.relay_dead`) and lets the exception propagate, so Celery
  records the failure and the history recorder marks the task DEAD when it
  ran out of retries.

Topic tasks are ``acks_late`` with ``reject_on_worker_lost``: a worker that
dies mid-task leaves the message in the store, and it runs again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..priority import LANE_NAMES
from ..retry import RetryPolicy
from . import relay_dead
from .relay_errors import PayloadError
from .relay_payloads import Codec
from .relay_timeout import time_limit

if TYPE_CHECKING:
    from celery import Celery, Task

    from ..storage import Store

logger = logging.getLogger(__name__)

#: message header (and request attribute) holding the delay a retry was scheduled with
RETRY_DELAY_HEADER = "gorelay_retry_delay"


@dataclass(frozen=True)
class Topic:
    """What ``register`` recorded for one topic."""

    name: str
    handler: Callable[[Any], Any]
    codec: Codec
    policy: RetryPolicy
    timeout: float | None
    queue: str | None
    lane: int

    def describe(self) -> str:
        return (f"{self.name} -> {getattr(self.handler, '__qualname__', self.handler)!s}"
                f"({self.codec.name}), lane {LANE_NAMES[self.lane]}")


def make_task(app: Celery, topic: Topic, store: Callable[[], Store]) -> Task:
    """Register ``topic`` on ``app`` as a Celery task and return it.

    ``store`` returns the store where dead messages are kept (called in the
    worker, only when a task dies).
    """
    policy = topic.policy

    def run(self: Task, payload: Any) -> Any:
        request = self.request
        retries = int(request.retries or 0)
        try:
            value = topic.codec.decode(payload)
        except PayloadError as exc:
            # The message was not made by this topic's encoder (an old release, a
            # hand-written send_task): retrying cannot help.
            _die(self, topic, payload, exc, retries, store)
            raise
        try:
            with time_limit(topic.timeout, topic.name):
                return topic.handler(value)
        except Exception as exc:
            if policy.should_retry(exc, retries):
                delay = policy.delay(retries)
                raise self.retry(exc=exc, countdown=delay, max_retries=policy.max_retries,
                                 headers={RETRY_DELAY_HEADER: delay}) from None
            _die(self, topic, payload, exc, retries, store)
            raise

    run.__name__ = run.__qualname__ = f"relay_{topic.name.replace('.', '_')}"
    run.__doc__ = getattr(topic.handler, "__doc__", None)
    run.__module__ = getattr(topic.handler, "__module__", __name__)
    task: Task = app.task(
        run, name=topic.name, bind=True, shared=False, max_retries=policy.max_retries,
        acks_late=True, reject_on_worker_lost=True, typing=False,
    )
    return task


def _die(task: Task, topic: Topic, payload: Any, exc: BaseException, retries: int,
         store: Callable[[], Store]) -> None:
    """Keep the message of a task that will not run again, for ``relay.retry``."""
    request = task.request
    try:
        relay_dead.keep(store(), relay_dead.DeadTask(
            task_id=request.id, name=topic.name, args=[payload], kwargs={},
            queue=(request.delivery_info or {}).get("routing_key") or topic.queue,
            priority=(request.delivery_info or {}).get("priority"),
            retries=retries, exc_type=type(exc).__name__, reason=str(exc)[:1000],
        ))
    except Exception:  # noqa: BLE001 - never hide the task's own failure
        logger.warning("gorelay: could not keep dead task %s for re-drive", request.id,
                       exc_info=True)


__all__ = ["RETRY_DELAY_HEADER", "Topic", "make_task"]
