"""What the dashboard can do: retry, cancel, revoke, delete, purge.

Every action is recorded in history: retrying adds ``retry-requested`` to
the old task's timeline and a ``sent`` event with ``retry_of`` to the new
one; cancelling a waiting task records ``revoked``; revoking a running one
records ``revoke-requested`` (the worker reports ``revoked`` when it stops
it); purging a queue records ``revoked`` on the tasks that were waiting in
it; re-publishing or deleting a dead letter adds an event to its task when
history knows it.  Deleting a task removes its record and timeline, which is
what was asked; it is logged.

Re-sending goes through the Celery app (``send_task`` with a new task id,
the old queue and the lane's priority), so it needs the task's arguments as
JSON: history keeps them whole only with ``gorelay_history_args = "full"``.
Cancel and revoke use Celery's ``control.revoke`` broadcast: workers
running now drop the task, but Celery keeps revokes in worker memory, so a
worker started later runs a cancelled task that still waits in the queue
unless workers run with ``--statedb`` (history then moves on from REVOKED).
A dead Relay task keeps its whole call in the store (``relay:dead:<id>``,
see :mod:`gorelay_kombu.compat.relay_dead`); retrying one uses that record
and removes it.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..compat import relay_dead
from ..history import FINAL_STATES, History, TaskEvent, TaskRecord
from ..priority import PRIORITY_FOR_LANE
from ..storage import NewMessage, Store
from .errors import ActionRefused, NotFoundError, ReadOnlyError
from .reads import Reader
from .settings import DashboardSettings

logger = logging.getLogger("gorelay_kombu.dashboard")

#: states "cancel" applies to: the task waits in a queue or in a worker's prefetch
CANCELLABLE = frozenset({"PENDING", "RECEIVED", "RETRY"})
#: states "revoke" applies to: a worker runs the task now
RUNNING = frozenset({"STARTED"})
RETRYABLE = FINAL_STATES
#: states whose tasks were waiting in the broker, so a purge removed them
PURGED_STATES = ("PENDING", "RETRY")
BULK_STATES = frozenset({"FAILURE", "DEAD", "REVOKED", "SUCCESS"})
PAGE = 500


@dataclass(frozen=True)
class ResendPlan:
    """What a retry sends: from history, or from a dead Relay task's own record."""

    name: str
    args: list[Any]
    kwargs: dict[str, Any]
    queue: str | None
    priority: int | None
    from_dead_record: bool


@dataclass(frozen=True)
class Outcome:
    """What an action did: a line for the user and details for the JSON API."""

    message: str
    data: dict[str, Any] = field(default_factory=dict)


class Actions:
    """The actions of one dashboard; ``celery`` returns the Celery app when needed."""

    def __init__(self, store: Store, history: History, reader: Reader,
                 settings: DashboardSettings, celery: Callable[[], Any]) -> None:
        self.store = store
        self.history = history
        self.reader = reader
        self.settings = settings
        self._celery = celery

    def _writable(self) -> None:
        if self.settings.read_only:
            raise ReadOnlyError(
                "This dashboard is read-only: it shows tasks but does not change them. "
                "Start it without --read-only to retry, revoke, delete or purge."
            )

    def _task(self, task_id: str) -> TaskRecord:
        record = self.history.task(task_id)
        if record is None:
            raise NotFoundError(f"No task {task_id!r} in history (deleted or pruned?).")
        return record

    # -- retry ---------------------------------------------------------------------
    def retry(self, task_id: str) -> Outcome:
        """Re-send a finished task with a new id that links back to it."""
        self._writable()
        new_id = self._resend(self._task(task_id))
        return Outcome(f"Retried task {task_id} as {new_id}.",
                       {"task_id": task_id, "new_task_id": new_id})

    def resend_plan(self, record: TaskRecord) -> ResendPlan:
        """How ``record`` would be re-sent, or ActionRefused saying why it cannot be."""
        if record.state not in RETRYABLE:
            raise ActionRefused(
                f"Task {record.task_id} is {record.state}; only finished tasks "
                f"({', '.join(sorted(RETRYABLE))}) can be retried. Cancel or revoke it first."
            )
        priority = PRIORITY_FOR_LANE.get(record.lane) if record.lane is not None else None
        dead = relay_dead.find(self.store, record.task_id) if record.state == "DEAD" else None
        if dead is not None:  # a Relay task keeps its whole call while it is dead
            return ResendPlan(dead.name, list(dead.args), dict(dead.kwargs),
                              dead.queue or record.queue,
                              dead.priority if dead.priority is not None else priority, True)
        args, kwargs = replayable_call(record)
        if not record.name:
            raise ActionRefused(
                f"Task {record.task_id} has no task name in history, so it cannot be re-sent.")
        return ResendPlan(record.name, args, kwargs, record.queue, priority, False)

    def _resend(self, record: TaskRecord) -> str:
        plan = self.resend_plan(record)
        new_id = str(uuid.uuid4())
        now = time.time()
        self._celery().send_task(plan.name, args=plan.args, kwargs=plan.kwargs,
                                 queue=plan.queue, priority=plan.priority, task_id=new_id)
        if plan.from_dead_record:
            self.store.kv_delete(relay_dead.dead_key(record.task_id))
        fields: dict[str, Any] = {"retry_of": record.task_id, "name": plan.name,
                                  "queue": plan.queue, "lane": record.lane,
                                  "args": record.args, "kwargs": record.kwargs,
                                  "root_id": record.root_id, "parent_id": record.parent_id}
        self.history.record([
            TaskEvent(record.task_id, "retry-requested", now, info=f"retried as {new_id}"),
            TaskEvent(new_id, "sent", now, {k: v for k, v in fields.items() if v is not None},
                      info=f"retry of {record.task_id} from the dashboard"),
        ])
        return new_id

    def retry_all(self, state: str) -> Outcome:
        """Retry up to ``bulk_limit`` tasks in ``state`` not retried before."""
        self._writable()
        _bulk_state(state)
        retried: list[str] = []
        refused: list[str] = []
        skipped = 0
        offset = 0
        while len(retried) + skipped + len(refused) < self.settings.bulk_limit:
            page = self.history.tasks(state=state, newest_first=False, offset=offset,
                                      limit=PAGE)
            for record in page.items:
                if len(retried) + skipped + len(refused) >= self.settings.bulk_limit:
                    break
                if any(e.event == "retry-requested" for e in self.history.events(record.task_id)):
                    skipped += 1
                    continue
                try:
                    retried.append(self._resend(record))
                except ActionRefused as exc:
                    refused.append(str(exc))
            if not page.has_more:
                break
            offset += len(page.items)
        parts = [f"Retried {len(retried)} {state} task(s)."]
        if skipped:
            parts.append(f"{skipped} already retried, left alone.")
        if refused:
            parts.append(f"{len(refused)} could not be re-sent; first reason: {refused[0]}")
        return Outcome(" ".join(parts), {"retried": retried, "skipped": skipped,
                                         "refused": len(refused)})

    # -- cancel and revoke -----------------------------------------------------------
    def cancel(self, task_id: str) -> Outcome:
        """Revoke a task that has not started: workers drop it when it comes."""
        self._writable()
        record = self._task(task_id)
        if record.state not in CANCELLABLE:
            raise ActionRefused(
                f"Task {task_id} is {record.state}; only waiting tasks "
                f"({', '.join(sorted(CANCELLABLE))}) can be cancelled"
                + ("; use Revoke to stop a running task." if record.state in RUNNING else ".")
            )
        self._celery().control.revoke(task_id)
        self.history.record([TaskEvent(task_id, "revoked", time.time(),
                                       info="cancelled from the dashboard")])
        return Outcome(f"Cancelled task {task_id}.", {"task_id": task_id})

    def revoke(self, task_id: str) -> Outcome:
        """Ask the worker running a task to terminate it (SIGTERM)."""
        self._writable()
        record = self._task(task_id)
        if record.state not in RUNNING:
            raise ActionRefused(
                f"Task {task_id} is {record.state}; only running (STARTED) tasks can be "
                "revoked" + ("; use Cancel for a waiting task." if record.state in CANCELLABLE
                             else ".")
            )
        self._celery().control.revoke(task_id, terminate=True, signal="SIGTERM")
        self.history.record([TaskEvent(task_id, "revoke-requested", time.time(),
                                       worker=record.worker,
                                       info="terminate (SIGTERM) sent from the dashboard")])
        return Outcome(f"Asked the worker to terminate task {task_id}.", {"task_id": task_id})

    # -- delete --------------------------------------------------------------------
    def delete(self, task_id: str) -> Outcome:
        self._writable()
        self._task(task_id)
        count = self.history.delete_tasks([task_id])
        logger.info("dashboard: deleted task %s from history", task_id)
        return Outcome(f"Deleted task {task_id} from history.", {"deleted": count})

    def delete_all(self, state: str) -> Outcome:
        """Delete up to ``bulk_limit`` tasks in ``state`` from history."""
        self._writable()
        _bulk_state(state)
        deleted = 0
        while deleted < self.settings.bulk_limit:
            limit = min(PAGE, self.settings.bulk_limit - deleted)
            page = self.history.tasks(state=state, newest_first=False, limit=limit)
            if not page.items:
                break
            deleted += self.history.delete_tasks([t.task_id for t in page.items])
        logger.info("dashboard: deleted %d %s task(s) from history", deleted, state)
        return Outcome(f"Deleted {deleted} {state} task(s) from history.", {"deleted": deleted})

    # -- queues ----------------------------------------------------------------------
    def purge(self, queue: str, confirm: str | None) -> Outcome:
        """Delete a queue's waiting messages; ``confirm`` must repeat the queue name."""
        self._writable()
        if not self.store.has_queue(queue):
            raise NotFoundError(f"No queue {queue!r} in the store.")
        if confirm != queue:
            raise ActionRefused(
                f"Purging deletes every waiting message of {queue!r} for good; type the "
                "queue's name to confirm."
            )
        started = time.time()
        purged = self.store.purge(queue)
        marked = self._mark_purged(queue, started, purged)
        logger.info("dashboard: purged %d message(s) from queue %s", purged, queue)
        return Outcome(f"Purged {purged} message(s) from {queue}; {marked} task(s) marked "
                       "revoked in history.", {"purged": purged, "revoked": marked})

    def _mark_purged(self, queue: str, before: float, purged: int) -> int:
        """Record ``revoked`` on up to ``purged`` tasks that waited in ``queue``."""
        marked = 0
        info = f"queue {queue} purged from the dashboard"
        for state in PURGED_STATES:
            offset = 0
            while marked < purged:
                page = self.history.tasks(state=state, queue=queue, newest_first=False,
                                          offset=offset, limit=PAGE)
                gone = [t for t in page.items
                        if (t.sent_at or t.updated_at) <= before][: purged - marked]
                if gone:
                    now = time.time()
                    self.history.record([TaskEvent(t.task_id, "revoked", now, info=info)
                                         for t in gone])
                    marked += len(gone)
                # marked tasks leave ``state``; the ones sent after the purge stay
                offset += len(page.items) - len(gone)
                if not page.has_more:
                    break
        return marked

    # -- dead letters ----------------------------------------------------------------
    def retry_dead_letter(self, queue: str, message_id: int) -> Outcome:
        """Put a dead letter back in its queue as it was stored, then drop the dead copy."""
        self._writable()
        letter = self.reader.dead_letter(queue, message_id)
        if letter is None:
            raise NotFoundError(f"No dead letter {message_id} in queue {queue!r}.")
        payload = next(p for mid, _, p in self.store.dead_letters(queue) if mid == message_id)
        new_id = self.store.put(NewMessage(queue, payload, letter.lane))
        self.store.ack([message_id])
        self._note(letter.task_id, "retry-requested",
                   f"dead letter re-published to queue {queue} from the dashboard")
        return Outcome(f"Re-published dead letter {message_id} to {queue}.",
                       {"message_id": new_id, "task_id": letter.task_id})

    def delete_dead_letter(self, queue: str, message_id: int) -> Outcome:
        self._writable()
        letter = self.reader.dead_letter(queue, message_id)
        if letter is None:
            raise NotFoundError(f"No dead letter {message_id} in queue {queue!r}.")
        self.store.ack([message_id])
        self._note(letter.task_id, "deleted",
                   f"dead letter deleted from queue {queue} from the dashboard")
        return Outcome(f"Deleted dead letter {message_id} from {queue}.",
                       {"task_id": letter.task_id})

    def _note(self, task_id: str | None, event: str, info: str) -> None:
        if task_id is not None and self.history.task(task_id) is not None:
            self.history.record([TaskEvent(task_id, event, time.time(), info=info)])


def replayable_call(record: TaskRecord) -> tuple[list[Any], dict[str, Any]]:
    """The task's ``(args, kwargs)`` if history kept them whole, else ActionRefused."""
    args = _loads(record.args)
    kwargs = _loads(record.kwargs)
    if isinstance(args, list) and isinstance(kwargs, dict):
        return args, kwargs
    if record.args is None and record.kwargs is None:
        how = "history keeps no arguments (gorelay_history_args = \"none\")"
    elif any(t is not None and t.endswith("…") for t in (record.args, record.kwargs)):
        how = "history kept only a preview of its arguments (cut at the preview length)"
    else:
        how = "the arguments history kept are not a JSON list and object"
    raise ActionRefused(
        f"Task {record.task_id} cannot be re-sent: {how}. Set gorelay_history_args = \"full\" "
        "in the Celery config of the app that sends it, so history keeps arguments the "
        "dashboard can re-send."
    )


def _loads(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


def _bulk_state(state: str) -> None:
    if state not in BULK_STATES:
        raise ActionRefused(
            f"Bulk actions apply to finished tasks ({', '.join(sorted(BULK_STATES))}), "
            f"not {state!r}.")
