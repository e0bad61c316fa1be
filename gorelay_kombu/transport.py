"""The kombu transport: ``gorelay://`` and ``gorelay+<store>://``.

A kombu virtual transport over a :class:`~gorelay_kombu.storage.base.Store`.

* Messages are **leased**, not popped: a channel reserves up to its prefetch
  window in one store call; ``ack`` deletes, ``reject(requeue=True)`` and a
  clean close release; a process that dies loses nothing because leases it
  stops renewing expire after ``visibility_timeout``.  A keeper thread per
  connection renews the leases of messages this process still holds (so a
  task longer than the timeout is not delivered twice) and flushes acks in
  batches.
* Celery ``eta``/``countdown`` messages are stored invisible until due.
* Priorities: three lanes (see :mod:`gorelay_kombu.priority`), served high
  first by the store and by the per-channel :class:`~.ringbuffer.LaneRing`.
* Exchanges and bindings live in the store: fanout (remote control) and
  topic (events) work between processes.
* Wake-ups: a consumer blocks on the store's waiter and wakes right after
  a commit; ``polling_interval`` is only the fallback.

Transport options (``broker_transport_options``):

* ``visibility_timeout``: lease length in seconds (default 30), renewed
  every third of it while the message is held.
* ``polling_interval``: fallback wake-up in seconds (default 1).
* ``max_message_bytes``: largest stored message (default 16 MiB).
* ``reserve_batch``: most messages one reserve leases when prefetch is
  unlimited (default 100).
* the store's own options (SQLite: ``synchronous``, ``busy_timeout``).
"""

from __future__ import annotations

import time
from typing import Any

from kombu.transport import virtual

from .channel import DEFAULT_MAX_MESSAGE_BYTES, Channel
from .errors import InvalidOption, StoreUnavailable
from .keeper import Keeper
from .options import number_option
from .storage import Store, open_store, store_class

#: Options kombu or Celery may pass to any transport; accepted and unused.
GENERIC_OPTIONS = frozenset({
    "max_retries", "interval_start", "interval_step", "interval_max",
    "confirm_publish", "confirm_timeout", "socket_timeout", "socket_connect_timeout",
    "client_name", "body_encoding", "deadletter_queue",
})
TRANSPORT_OPTIONS = frozenset({
    "visibility_timeout", "polling_interval", "max_message_bytes", "reserve_batch",
})



GoRelayChannel = Channel


class Transport(virtual.Transport):
    """kombu transport class for ``gorelay://`` URLs."""

    Channel = Channel
    can_parse_url = True
    driver_type = "gorelay"
    driver_name = "gorelay"
    default_port = None
    polling_interval = 1.0
    visibility_timeout = 30.0
    max_message_bytes = DEFAULT_MAX_MESSAGE_BYTES
    reserve_batch = 100

    #: per event-loop callback, at most this many deliveries before yielding
    loop_batch = 128

    implements = virtual.Transport.implements.extend(
        asynchronous=True,
        exchange_type=frozenset(["direct", "topic", "fanout"]),
        heartbeats=False,
    )
    #: transient: kombu and Celery reconnect and retry on these
    connection_errors: Any = (*virtual.Transport.connection_errors, StoreUnavailable)
    channel_errors: Any = virtual.Transport.channel_errors

    def __init__(self, client: Any, **kwargs: Any) -> None:
        super().__init__(client, **kwargs)
        from . import ON_TRANSPORT_INIT
        from .url import parse_store_url

        ON_TRANSPORT_INIT[:] = [hook for hook in ON_TRANSPORT_INIT if not hook()]

        self.url = parse_store_url(self._store_url(client))
        options = dict(client.transport_options or {})
        store_options = store_class(self.url.kind).options
        allowed = TRANSPORT_OPTIONS | GENERIC_OPTIONS | store_options
        unknown = sorted(set(options) - allowed)
        if unknown:
            raise InvalidOption(
                f"Unknown transport option(s) {unknown} for the {self.url.kind} store. "
                f"Known: {sorted(TRANSPORT_OPTIONS | store_options)}."
            )
        self.visibility_timeout = number_option(options, "visibility_timeout", 30.0, 0.1)
        self.polling_interval = number_option(options, "polling_interval", 1.0, 0.001)
        self.max_message_bytes = int(
            number_option(options, "max_message_bytes", DEFAULT_MAX_MESSAGE_BYTES, 1)
        )
        self.reserve_batch = int(number_option(options, "reserve_batch", 100, 1))
        self.ring_capacity = max(self.reserve_batch, 128)
        self._store_options = {
            k: v for k, v in options.items() if k in store_options
        }
        self._store: Store | None = None
        self._waiter: Any = None
        self._keeper = Keeper(self)
        #: bumped on every wake-up (doorbell, fallback timer, due timer)
        self.generation = 0
        self._loop: Any = None
        self._loop_fd: int | None = None
        self._loop_timers: list[Any] = []
        self._due_timer: Any = None

    @staticmethod
    def _store_url(client: Any) -> str:
        hostname = client.hostname or ""
        if "://" in hostname:
            return hostname  # "sqlite:///x.db" after kombu split "gorelay+"; or "gorelay://"
        return "gorelay://"

    @property
    def store(self) -> Store:
        if self._store is None:
            self._store = open_store(self.url, self._store_options)
        return self._store

    def establish_connection(self) -> Any:
        _ = self.store  # open now: bad URLs and files fail here, clearly
        return super().establish_connection()

    def close_connection(self, connection: Any) -> None:
        try:
            super().close_connection(connection)
        finally:
            self._detach_from_loop()
            self._keeper.stop()
            if self._waiter is not None:
                self._waiter.close()
                self._waiter = None
            if self._store is not None:
                self._store.close()
                self._store = None

    def wake(self) -> None:
        """Wake this connection's drain_events from another thread."""
        waiter = self._waiter
        if waiter is not None:
            waiter.wake()

    def _get_waiter(self) -> Any:
        if self._waiter is None:
            self._waiter = self.store.waiter()  # before the first check: no lost ring
        return self._waiter

    # -- Celery's event loop (kombu Hub) ------------------------------------------
    def register_with_event_loop(self, connection: Any, loop: Any) -> None:
        """Deliver from the hub: a reader on the waiter, plus fallback timers.

        Producer-only connections (Celery's event dispatcher) never consume,
        so the reader is attached at the first ``basic_consume``.
        """
        self._loop = loop
        if any(channel._consumers for channel in self._channel_list()):
            self.attach_to_loop()

    def attach_to_loop(self) -> None:
        loop = self._loop
        if loop is None or self._loop_fd is not None:
            return
        waiter = self._get_waiter()
        fd = waiter.fileno() if hasattr(waiter, "fileno") else -1
        if fd >= 0:
            loop.add_reader(fd, self.on_readable)
            self._loop_fd = fd
        else:
            self._loop_fd = -1  # no doorbell: the fallback timer does all the work
        self._loop_timers.append(loop.call_repeatedly(self.polling_interval, self.on_readable))
        loop.call_soon(self.on_readable)

    def _detach_from_loop(self) -> None:
        loop, fd = self._loop, self._loop_fd
        if loop is not None and fd is not None and fd >= 0:
            try:
                loop.remove_reader(fd)
            except (KeyError, ValueError, OSError):
                pass
        for timer in self._loop_timers + [self._due_timer]:
            if timer is not None:
                timer.cancel()
        self._loop_timers, self._due_timer = [], None
        self._loop = self._loop_fd = None

    def on_readable(self, *args: Any) -> None:
        """Deliver what is ready without blocking (hub callback)."""
        if self._loop is None or self._store is None:
            return
        waiter = self._get_waiter()
        if hasattr(waiter, "drain"):
            waiter.drain()
        self.generation += 1
        delivered = 0
        while delivered < self.loop_batch and self._deliver_round():
            delivered += 1
        if delivered >= self.loop_batch:
            self._loop.call_soon(self.on_readable)  # more to do: yield to the loop first
        elif delivered and any(ch._starved for ch in self._channel_list()):
            # The prefetch window filled up while delivering.  With the solo
            # pool the task already ran and Celery queued its ack with
            # hub.call_soon from this thread, which does not interrupt the
            # hub's poll: make our own fd readable so the ack (and the next
            # delivery) runs now, not at the next timer.
            waiter.wake()
        self._schedule_due()

    def _channel_list(self) -> list[GoRelayChannel]:
        return self.channels or []

    def _deliver_round(self) -> bool:
        channels = self._channel_list()
        for i in range(len(channels)):
            channel = channels[i] if i < len(channels) else None
            if channel is not None and channel.deliver_one():
                if len(channels) > 1:  # fairness between channels
                    channels.append(channels.pop(i))
                return True
        return False

    def _schedule_due(self) -> None:
        """Wake the loop when the next scheduled message or lease comes due."""
        due = self.store.next_due()
        if due is None:
            return
        delay = due - time.time()
        if 0 < delay < self.polling_interval:
            if self._due_timer is not None:
                self._due_timer.cancel()
            self._due_timer = self._loop.call_later(delay + 0.001, self.on_readable)

    # -- blocking consumers (kombu Connection.drain_events) -----------------------
    def drain_events(self, connection: Any, timeout: float | None = None,
                     **kwargs: Any) -> None:
        waiter = self._get_waiter()
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if self._deliver_round():
                return
            wait = self.polling_interval
            now = time.monotonic()
            if deadline is not None:
                if now >= deadline:
                    raise TimeoutError()
                wait = min(wait, deadline - now)
            due = self.store.next_due()
            if due is not None:
                until_due = due - time.time()
                if until_due > 0:
                    wait = min(wait, until_due + 0.001)
            waiter.wait(wait)
            self.generation += 1

    @property
    def default_connection_params(self) -> dict[str, Any]:
        return {"port": None, "hostname": "gorelay://"}
