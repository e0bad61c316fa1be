"""The keeper: one thread per connection that flushes acks and renews leases."""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from typing import TYPE_CHECKING, Any

from .errors import StoreUnavailable

if TYPE_CHECKING:
    from .channel import Channel
    from .transport import Transport

logger = logging.getLogger(__name__)


class Keeper:
    """One thread per connection: flushes acks soon and renews leases."""

    def __init__(self, transport: Transport) -> None:
        self._transport = weakref.ref(transport)
        self._channels: weakref.WeakSet[Channel] = weakref.WeakSet()
        self._event = threading.Event()
        self._stopped = False
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()

    def add(self, channel: Channel) -> None:
        if channel in self._channels and self._pid == os.getpid():
            return
        self._channels.add(channel)
        if self._thread is None or self._pid != os.getpid():
            self._pid = os.getpid()
            self._thread = threading.Thread(
                target=self._run, name="gorelay-keeper", daemon=True
            )
            self._thread.start()

    def discard(self, channel: Channel) -> None:
        self._channels.discard(channel)

    def poke(self) -> None:
        if not self._event.is_set():
            self._event.set()

    def stop(self) -> None:
        self._stopped = True
        self._event.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)
        for channel in list(self._channels):
            self._safely(channel.flush_acks)

    def _run(self) -> None:
        transport = self._transport()
        if transport is None:
            return
        # Often enough to renew leases (a third of the timeout) and to keep
        # queues declared with a short x-expires (Celery's pidbox: 10 s) alive.
        every = max(min(transport.visibility_timeout / 3.0, 1.0), 0.05)
        del transport
        next_renew = time.monotonic() + every
        while not self._stopped:
            poked = self._event.wait(timeout=max(next_renew - time.monotonic(), 0.0))
            if self._stopped:
                return
            if poked:
                time.sleep(0.002)  # let a burst of acks share one commit
                self._event.clear()
                for channel in list(self._channels):
                    self._safely(channel.flush_acks)
            if time.monotonic() >= next_renew:
                channels = list(self._channels)
                for channel in channels:
                    self._safely(channel.keepalive)
                if channels:
                    self._safely(channels[0].store.maintain)
                next_renew = time.monotonic() + every

    @staticmethod
    def _safely(fn: Any) -> None:
        try:
            fn()
        except StoreUnavailable:
            pass  # retried on the next round; leases outlive one missed renewal
        except Exception:  # noqa: BLE001 - never kill the keeper thread
            logger.exception("gorelay keeper: %s failed", fn)
