"""The live feed: one poller per dashboard, pushed to every open page.

While at least one page listens, a thread reads :meth:`Reader.stamp` (the
task counters, ``queue_stats`` and worker states: a few indexed reads) every
``poll_interval`` seconds and wakes the websocket handlers when it changed;
each handler then sends ``{"type": "change", "stamp": ...}`` and the page
re-fetches what it shows.  With no page open nothing polls.  Handlers send a
``ping`` every :data:`KEEPALIVE` seconds so a vanished browser is noticed.
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any

from .reads import Reader

logger = logging.getLogger("gorelay_kombu.dashboard")

KEEPALIVE = 15.0


class LiveFeed:
    """Shares one store poll between every connected websocket."""

    def __init__(self, reader: Reader, interval: float) -> None:
        self.reader = reader
        self.interval = interval
        self._cond = threading.Condition()
        self._stamp: str | None = None
        self._listeners = 0
        self._thread: threading.Thread | None = None
        self._closed = False

    @property
    def listeners(self) -> int:
        return self._listeners

    def current(self) -> str:
        """The latest stamp: the poller's while it runs, else read now."""
        with self._cond:
            polling = self._thread is not None and self._thread.is_alive()
            if polling and self._stamp is not None:
                return self._stamp
        stamp = self.reader.stamp()
        with self._cond:
            if not polling or self._stamp is None:
                self._stamp = stamp
            return self._stamp

    def subscribe(self) -> None:
        with self._cond:
            self._listeners += 1
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="gorelay-dashboard-live",
                                                daemon=True)
                self._thread.start()

    def unsubscribe(self) -> None:
        with self._cond:
            self._listeners -= 1
            self._cond.notify_all()

    def wait(self, seen: str | None, timeout: float) -> str | None:
        """Block until the stamp differs from ``seen`` (return it) or ``timeout`` (None)."""
        with self._cond:
            self._cond.wait_for(lambda: self._closed or (self._stamp is not None
                                                          and self._stamp != seen),
                                timeout=timeout)
            if self._closed or self._stamp == seen:
                return None
            return self._stamp

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def _run(self) -> None:
        while True:
            with self._cond:
                if self._closed or self._listeners <= 0:
                    self._thread = None
                    return
            try:
                stamp = self.reader.stamp()
            except Exception:  # the store may be restarting: keep the pages open
                logger.warning("dashboard: could not read the store for the live feed",
                               exc_info=True)
                stamp = None
            with self._cond:
                if stamp is not None and stamp != self._stamp:
                    self._stamp = stamp
                    self._cond.notify_all()
                self._cond.wait(self.interval)


def serve_socket(ws: Any, feed: LiveFeed) -> None:
    """Run one websocket: hello, then a message per change, pings in between."""
    feed.subscribe()
    try:
        seen = feed.current()
        ws.send(json.dumps({"type": "hello", "stamp": seen}))
        idle = 0.0
        while ws.connected and not feed.closed:
            stamp = feed.wait(seen, 1.0)
            if stamp is not None:
                seen = stamp
                ws.send(json.dumps({"type": "change", "stamp": stamp}))
                idle = 0.0
                continue
            idle += 1.0
            if idle >= KEEPALIVE:
                ws.send(json.dumps({"type": "ping"}))
                idle = 0.0
    finally:
        feed.unsubscribe()
