"""Wake-ups for the PostgreSQL store: ``LISTEN`` on one channel per schema.

Publishers ``NOTIFY`` in the transaction of their insert (see
:mod:`.postgres_sql`); :class:`NotifyWaiter` turns notifications into a
readable descriptor for kombu's event loop and a blocking :meth:`wait`.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import threading
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg import pq, sql

from ..errors import StoreError, StoreUnavailable
from .base import Waiter

#: seconds of silence after which the listening connection is pinged
LISTEN_PING_SECONDS = 30.0


class NotifyWaiter(Waiter):
    """Wakes on ``NOTIFY`` from any process, and on :meth:`wake` from this one.

    A daemon thread owns one listening connection (outside the pool) and
    forwards every notification to a local socket pair, whose read end is
    :meth:`fileno`: it stays the same when the thread reconnects after the
    server dropped the connection (and then wakes the consumer, as
    notifications may have been missed meanwhile).  ``wake`` writes to the
    same socket pair, so the event loop watches one descriptor.
    """

    def __init__(self, connect: Callable[[], psycopg.Connection[Any]], channel: str) -> None:
        self._connect, self._channel = connect, channel
        self._pid = -1
        self._start()

    def _start(self) -> None:
        self._pid = os.getpid()
        self._closed = False
        self._rsock, self._wsock = socket.socketpair()
        self._rsock.setblocking(False)
        self._wsock.setblocking(False)
        self._stop_r, self._stop_w = socket.socketpair()
        conn: psycopg.Connection[Any] | None
        try:  # listen before returning: a publish right after waiter() is not missed
            conn = self._listen()
        except StoreError:
            conn = None  # the thread keeps trying; the fallback poll covers the gap
        self._thread = threading.Thread(
            target=self._run, args=(conn,), name="gorelay-listen", daemon=True)
        self._thread.start()

    def _listen(self) -> psycopg.Connection[Any]:
        conn = self._connect()
        try:
            conn.add_notify_handler(lambda _n: self.wake())  # those read during a ping
            conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self._channel)))
        except psycopg.Error as exc:
            conn.close()
            raise StoreUnavailable(f"LISTEN {self._channel} failed: {exc}") from exc
        return conn

    def _run(self, conn: psycopg.Connection[Any] | None) -> None:
        backoff = 0.05
        while not self._closed:
            if conn is None:
                try:
                    conn = self._listen()
                    backoff = 0.05
                    self.wake()  # notifications may have been missed while away
                except StoreError:
                    if self._sleep(backoff):
                        return
                    backoff = min(backoff * 2, 2.0)
                    continue
            try:
                fd: int = conn.pgconn.socket
                readable, _, _ = select.select([fd, self._stop_r.fileno()], [], [],
                                               LISTEN_PING_SECONDS)
                if self._stop_r.fileno() in readable or self._closed:
                    break
                if fd in readable:
                    if self._consume(conn.pgconn):
                        self.wake()
                else:
                    conn.execute("SELECT 1")  # silence: make sure the server is still there
            except (psycopg.Error, OSError):
                with contextlib.suppress(Exception):
                    conn.close()
                conn = None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    @staticmethod
    def _consume(pgconn: Any) -> bool:
        pgconn.consume_input()
        got = False
        while pgconn.notifies() is not None:
            got = True
        if pgconn.status != pq.ConnStatus.OK:
            raise psycopg.OperationalError("the listening connection was closed")
        return got

    def _sleep(self, seconds: float) -> bool:
        """Sleep unless closed meanwhile; True when closed."""
        readable, _, _ = select.select([self._stop_r], [], [], seconds)
        return bool(readable) or self._closed

    def _check_fork(self) -> None:
        if os.getpid() != self._pid:
            self._start()  # the parent's thread is gone here; its sockets are its own

    def fileno(self) -> int:
        self._check_fork()
        return self._rsock.fileno()

    def wait(self, timeout: float) -> bool:
        self._check_fork()
        readable, _, _ = select.select([self._rsock], [], [], max(timeout, 0.0))
        if not readable:
            return False
        self.drain()
        return True

    def wake(self) -> None:
        with contextlib.suppress(OSError):  # buffer full: already awake
            self._wsock.send(b"\x01")

    def drain(self) -> None:
        """Consume pending wake-ups without blocking."""
        while True:
            try:
                if not self._rsock.recv(4096):
                    return
            except OSError:  # BlockingIOError: nothing left
                return

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if os.getpid() != self._pid:
            return
        with contextlib.suppress(OSError):
            self._stop_w.send(b"\x00")
        self._thread.join(timeout=5)
        for s in (self._rsock, self._wsock, self._stop_r, self._stop_w):
            s.close()
