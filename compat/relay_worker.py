"""In-process workers for ``relay.start()``: a Celery worker in a background thread.

It is Celery's own :class:`~celery.worker.WorkController` (the machinery
``celery worker`` runs, without the command line's signal handlers, which
only the main thread may install), with the threads pool, consuming the
Relay's queues.  The app becomes Celery's default app, because the pool's
threads look tasks up through ``current_app``.

:meth:`InProcessWorker.stop` is Celery's warm shutdown: it stops taking
messages, waits up to ``timeout`` seconds for running tasks to finish, and
releases the messages it had leased but not started, so other workers get
them at once.  A task still running after ``timeout`` keeps its lease
until the process exits; its message is then delivered again (topic tasks
are ``acks_late``).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from celery._state import _set_task_join_will_block

from .relay_errors import RelayStateError

if TYPE_CHECKING:
    from celery import Celery

logger = logging.getLogger(__name__)

#: seconds ``start`` waits for the worker to be consuming
READY_TIMEOUT = 60.0


class InProcessWorker:
    """One Celery worker running in a daemon thread of this process."""

    def __init__(self, app: Celery, *, concurrency: int, queues: Sequence[str] | None,
                 hostname: str | None = None, loglevel: str | int | None = None,
                 **options: Any) -> None:
        self.app = app
        self.hostname = hostname or \
            f"relay-{os.getpid()}-{uuid.uuid4().hex[:6]}@{socket.gethostname()}"
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        kwargs: dict[str, Any] = dict(
            pool_cls="threads", concurrency=concurrency, hostname=self.hostname,
            without_mingle=True, without_gossip=True, without_heartbeat=True,
            ready_callback=self._on_ready,
        )
        if queues:
            kwargs["queues"] = list(queues)
        if loglevel is not None:
            kwargs["loglevel"] = loglevel
        kwargs.update(options)
        self._kwargs = kwargs
        self.controller: Any = None

    def _on_ready(self, *_: Any) -> None:
        self._ready.set()

    def start(self, timeout: float = READY_TIMEOUT) -> None:
        """Start consuming; return once the worker is ready (or raise why not)."""
        self.app.set_default()  # the pool's threads resolve tasks through current_app
        self.controller = self.app.WorkController(**self._kwargs)
        self._thread = threading.Thread(target=self._run, name=f"relay-worker:{self.hostname}",
                                        daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            self.stop(timeout=5.0)
            raise RelayStateError(
                f"The in-process worker {self.hostname} was not ready within {timeout:g}s"
                + (f": {self._error!r}" if self._error else "")
                + ". Check that the store is reachable (the log says more)."
            )
        if self._error is not None:
            raise RelayStateError(
                f"The in-process worker {self.hostname} failed to start: {self._error!r}"
            ) from self._error
        # The pool set Celery's process-wide "a join would block" flag, which makes
        # every AsyncResult.get() of this process raise; the producer side of this
        # process (the application) must still be able to wait for results, as with
        # celery.contrib.testing's in-thread worker.
        _set_task_join_will_block(False)

    def _run(self) -> None:
        try:
            self.controller.start()
        except BaseException as exc:  # noqa: BLE001 - reported to start() or logged
            self._error = exc
            if not self._ready.is_set():
                self._ready.set()
            else:
                logger.exception("gorelay: in-process worker %s stopped on an error",
                                 self.hostname)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self, timeout: float = 30.0) -> bool:
        """Warm shutdown; True when the worker thread ended within ``timeout``."""
        thread, controller = self._thread, self.controller
        if thread is None or controller is None:
            return True
        if thread.is_alive():
            # Another thread than the worker's: stop() blocks until the pool is done.
            stopper = threading.Thread(
                target=controller.stop, kwargs={"in_sighandler": False},
                name=f"relay-stop:{self.hostname}", daemon=True)
            deadline = time.monotonic() + timeout
            stopper.start()
            stopper.join(timeout)
            thread.join(max(0.0, deadline - time.monotonic()))
        if thread.is_alive():
            return False
        # Celery's worker state is per process: let a later start() run again.
        from celery.worker import state

        state.should_stop = state.should_terminate = None
        return True


__all__ = ["InProcessWorker"]
