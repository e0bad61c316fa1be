"""The Redis store's waiter: a pub/sub subscription forwarded to one descriptor."""

from __future__ import annotations

import contextlib
import select
import socket
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from .base import Waiter


class RedisWaiter(Waiter):
    """Readable on a publish: a pub/sub subscription forwarded to a socketpair.

    A daemon thread reads the subscription (re-subscribing by itself after a
    lost connection, with a wake-up so consumers re-check) and writes one
    byte to the pair; :meth:`wake` writes to it too, so :meth:`fileno` is the
    one descriptor an event loop watches.
    """

    def __init__(self, pubsub: Any, channel: str,
                 errors: Callable[[], AbstractContextManager[None]], timeout: float) -> None:
        self._closed = False
        self._reader, self._writer = socket.socketpair()
        self._reader.setblocking(False)
        self._writer.setblocking(False)
        self._pubsub = pubsub
        try:
            with errors():
                self._pubsub.subscribe(channel)
                deadline = time.monotonic() + timeout
                while time.monotonic() < deadline:  # subscribed before we return
                    message = self._pubsub.get_message(timeout=0.5)
                    if message is not None and message.get("type") == "subscribe":
                        break
        except BaseException:
            self._closed = True
            self._cleanup()
            raise
        self._thread = threading.Thread(target=self._run, name="gorelay-redis-waiter",
                                        daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._closed:
                try:
                    message = self._pubsub.get_message(timeout=1.0)
                except Exception:  # noqa: BLE001 - lost connection: retry, wake consumers
                    if self._closed:
                        return
                    self.wake()
                    time.sleep(0.2)
                    continue
                if message is not None:
                    self.wake()
        finally:
            with contextlib.suppress(Exception):
                self._pubsub.close()

    def fileno(self) -> int:
        return self._reader.fileno() if not self._closed else -1

    def wait(self, timeout: float) -> bool:
        if self._closed:
            return False
        readable, _, _ = select.select([self._reader], [], [], max(timeout, 0.0))
        if not readable:
            return False
        self.drain()
        return True

    def wake(self) -> None:
        with contextlib.suppress(OSError):
            self._writer.send(b"\x01")

    def drain(self) -> None:
        """Consume pending wake-ups without blocking."""
        with contextlib.suppress(OSError):
            while self._reader.recv(4096):
                pass

    def close(self) -> None:
        if not self._closed:
            self._closed = True  # the thread closes the subscription within a second
            self._cleanup()

    def _cleanup(self) -> None:
        for sock in (self._reader, self._writer):
            with contextlib.suppress(OSError):
                sock.close()
        if not hasattr(self, "_thread"):
            with contextlib.suppress(Exception):
                self._pubsub.close()
