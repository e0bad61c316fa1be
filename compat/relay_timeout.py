"""A per-handler time limit that works in any pool (threads, prefork, solo).

Celery's own ``time_limit`` / ``soft_time_limit`` need the prefork pool
(signals to a child process); the in-process workers of ``relay.start()``
are threads.  :func:`time_limit` instead arms a timer that raises
:class:`~.relay_errors.HandlerTimeout` *inside the handler's thread*
(``PyThreadState_SetAsyncExc``, as dramatiq's time limit does).  The
exception is delivered between Python bytecodes, so a handler blocked in
one long C call (a ``time.sleep``, a socket read without a timeout) sees it
only when that call returns: give blocking calls their own timeouts too.

A limit that fires is a normal failure: the topic's retry policy decides
whether the task runs again.
"""

from __future__ import annotations

import ctypes
import threading
from types import TracebackType

from .relay_errors import HandlerTimeout

_set_async_exc = ctypes.pythonapi.PyThreadState_SetAsyncExc


def _raise_in(thread_id: int, exc_type: type[BaseException] | None) -> None:
    """Make ``thread_id`` raise ``exc_type`` soon; None clears a pending one."""
    # No argtypes: None must reach C as NULL (py_object(None) would be Py_None).
    _set_async_exc(ctypes.c_ulong(thread_id),
                   None if exc_type is None else ctypes.py_object(exc_type))


class time_limit:  # noqa: N801 - used as a context manager, like contextlib's
    """``with time_limit(seconds, what):`` raises HandlerTimeout after ``seconds``.

    ``seconds`` None or 0: no limit.
    """

    def __init__(self, seconds: float | None, what: str) -> None:
        self.seconds, self.what = seconds, what
        self._lock = threading.Lock()
        self._done = False
        self._fired = False
        self._timer: threading.Timer | None = None
        self._thread_id = 0

    def __enter__(self) -> time_limit:
        if self.seconds:
            self._thread_id = threading.get_ident()
            self._timer = threading.Timer(self.seconds, self._fire)
            self._timer.daemon = True
            self._timer.start()
        return self

    def _fire(self) -> None:
        with self._lock:
            if self._done:
                return
            self._fired = True
            _raise_in(self._thread_id, HandlerTimeout)

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._timer is None:
            return
        self._timer.cancel()
        with self._lock:
            self._done = True
            if self._fired and exc_type is not HandlerTimeout:
                # Fired as the handler returned: take back the pending exception
                # so it cannot surface later, outside the handler.
                _raise_in(self._thread_id, None)
        if exc_type is HandlerTimeout and self._fired:
            raise HandlerTimeout(
                f"The handler of {self.what} ran longer than its timeout of "
                f"{self.seconds:g}s. Make it faster, split the work, or register the topic "
                "with a larger timeout."
            ) from None


__all__ = ["time_limit"]
