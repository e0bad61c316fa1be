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

import itertools
import json
import os
import socket
import threading
import time
import uuid
import weakref
from datetime import datetime
from queue import Empty
from typing import Any

from kombu.transport import virtual
from kombu.transport.base import to_rabbitmq_queue_arguments
from kombu.utils import json as kombu_json

from .errors import InvalidOption, MessageTooLarge, StoreUnavailable
from .priority import lane_for_priority
from .ringbuffer import LaneRing
from .storage import NewMessage, Reserved, Store, open_store, store_class

DEFAULT_MAX_MESSAGE_BYTES = 16 * 1024 * 1024

#: Options kombu or Celery may pass to any transport; accepted and unused.
GENERIC_OPTIONS = frozenset({
    "max_retries", "interval_start", "interval_step", "interval_max",
    "confirm_publish", "confirm_timeout", "socket_timeout", "socket_connect_timeout",
    "client_name", "body_encoding", "deadletter_queue",
})
TRANSPORT_OPTIONS = frozenset({
    "visibility_timeout", "polling_interval", "max_message_bytes", "reserve_batch",
})


def _number(options: dict[str, Any], name: str, default: float, minimum: float) -> float:
    value = options.get(name, default)
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = minimum - 1
    if number < minimum:
        raise InvalidOption(f"transport option {name}={value!r} must be a number >= {minimum}.")
    return number


_encoder = json.JSONEncoder(separators=(",", ":"), check_circular=False)


def _dumps(message: dict[str, Any]) -> bytes:
    try:
        return _encoder.encode(message).encode()
    except TypeError:  # headers with datetimes, UUIDs...: kombu's encoder knows them
        return str(kombu_json.dumps(message)).encode()


def _visible_at(message: dict[str, Any]) -> float:
    """Epoch seconds of a Celery ``eta`` header, or 0 for "now"."""
    eta = (message.get("headers") or {}).get("eta")
    if not eta:
        return 0.0
    try:
        when = eta if isinstance(eta, datetime) else datetime.fromisoformat(str(eta))
        return when.timestamp()
    except (TypeError, ValueError):
        return 0.0  # Celery will report the bad eta itself


def _seconds(milliseconds: Any) -> float | None:
    """AMQP queue arguments and ``expiration`` are milliseconds."""
    if milliseconds in (None, ""):
        return None
    try:
        return max(float(milliseconds) / 1000.0, 0.0)
    except (TypeError, ValueError):
        return None


def _expires_at(expiration: Any) -> float | None:
    seconds = _seconds(expiration)
    return None if seconds is None else time.time() + seconds


class QoS(virtual.QoS):
    """Acks and rejects settle the lease in the store, not only in memory."""

    def ack(self, delivery_tag: Any) -> None:
        self.channel._settle(delivery_tag, ack=True)
        super().ack(delivery_tag)

    def reject(self, delivery_tag: Any, requeue: bool = False) -> None:
        # requeue releases the lease in place (the message keeps its position);
        # without requeue it is dropped, as AMQP does.
        self.channel._settle(delivery_tag, ack=not requeue)
        self._quick_ack(delivery_tag)

    def restore_unacked(self) -> list[Any]:
        self._flush()
        delivered: Any = self._delivered
        tags = list(delivered)
        delivered.clear()
        self.channel._release_tags(tags)
        return []

    def restore_visible(self, *args: Any, **kwargs: Any) -> None:
        """Expired leases are restored by the store itself."""


class Channel(virtual.Channel):
    """A channel whose queues, bindings and leases live in the store."""

    QoS = QoS
    supports_fanout = True
    #: unset priority means the normal lane (kombu's default would be 0: high)
    default_priority: Any = None
    do_restore = True

    def __init__(self, connection: Transport, **kwargs: Any) -> None:
        super().__init__(connection, **kwargs)
        self.store: Store = connection.store
        self._tag_prefix = f"{uuid.uuid4().hex}."
        self._tag_counter = itertools.count(1)
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"
        self.visibility_timeout = connection.visibility_timeout
        self._ring: LaneRing[tuple[str, dict[str, Any]]] = LaneRing(connection.ring_capacity)
        self._tag_ids: dict[Any, int] = {}
        self._pending_acks: list[int] = []
        self._no_ack_queues: set[str] = set()
        self._expiring_queues: set[str] = set()
        self._starved = False
        #: the transport's wake-up generation at which a reserve came back short:
        #: nothing new can be there until the next wake-up (publish, timer, due).
        self._exhausted_at: int | None = None

    # -- publishing -----------------------------------------------------------
    def _next_delivery_tag(self) -> str:
        """Unique across processes (random prefix), cheaper than a uuid4 each."""
        return f"{self._tag_prefix}{next(self._tag_counter)}"

    def prepare_message(self, body: Any, priority: Any = None, *args: Any, **kw: Any) -> Any:
        message = super().prepare_message(body, priority, *args, **kw)
        if priority is not None:  # kombu's ``priority or default`` turns 0 into unset
            message["properties"]["priority"] = priority
        return message

    def _encode(self, queue: str, message: dict[str, Any]) -> NewMessage:
        payload = _dumps(message)
        limit = self.connection.max_message_bytes
        if len(payload) > limit:
            raise MessageTooLarge(
                f"A message of {len(payload)} bytes for queue {queue!r} exceeds "
                f"max_message_bytes={limit}. Store large data elsewhere and pass a reference, "
                "or raise max_message_bytes in broker_transport_options. Nothing was stored."
            )
        properties = message["properties"]
        lane = lane_for_priority(properties.get("priority"))
        return NewMessage(queue, payload, lane, _visible_at(message),
                          _expires_at(properties.get("expiration")))

    def _put(self, queue: str, message: dict[str, Any], **kwargs: Any) -> None:
        self.store.put(self._encode(queue, message))

    def _put_fanout(self, exchange: str, message: dict[str, Any], routing_key: str,
                    **kwargs: Any) -> None:
        queues = sorted({q for _, _, q in self.store.bindings(exchange)})
        if queues:
            self.store.put_many([self._encode(q, message) for q in queues])

    # -- queues and bindings --------------------------------------------------
    def prepare_queue_arguments(self, arguments: Any, **kwargs: Any) -> Any:
        """Honour ``Queue(expires=..., message_ttl=...)`` as AMQP brokers do."""
        return to_rabbitmq_queue_arguments(arguments, **kwargs)

    def _new_queue(self, queue: str, **kwargs: Any) -> None:
        arguments = kwargs.get("arguments") or {}
        expires = _seconds(arguments.get("x-expires"))
        if expires is not None:
            self._expiring_queues.add(queue)
        self.store.declare_queue(
            queue, message_ttl=_seconds(arguments.get("x-message-ttl")), expires=expires
        )

    def _has_queue(self, queue: str, **kwargs: Any) -> bool:
        return self.store.has_queue(queue)

    def _size(self, queue: str) -> int:
        return self.store.size(queue)

    def _purge(self, queue: str) -> int:
        return self.store.purge(queue)

    def queue_delete(self, queue: str, if_unused: bool = False, if_empty: bool = False,
                     **kwargs: Any) -> None:
        if if_empty and self._size(queue):
            return
        self.store.delete_queue(queue)
        self.state.queue_bindings_delete(queue)

    def exchange_declare(self, exchange: str | None = None, type: str = "direct",
                         *args: Any, **kwargs: Any) -> None:
        super().exchange_declare(exchange, type, *args, **kwargs)
        if exchange and not kwargs.get("passive"):
            self.store.declare_exchange(exchange, type or "direct")

    def typeof(self, exchange: str, default: str = "direct") -> Any:
        try:
            type_ = self.state.exchanges[exchange]["type"]
        except KeyError:
            type_ = self.store.exchange_type(exchange) or default
        return self.exchange_types[type_]

    def _queue_bind(self, exchange: str, routing_key: str, pattern: str | None,
                    queue: str) -> None:
        self.store.bind(exchange, routing_key or "", pattern, queue)

    def queue_unbind(self, queue: str, exchange: str | None = None, routing_key: str = "",
                     arguments: Any = None, **kwargs: Any) -> None:
        super().queue_unbind(queue, exchange, routing_key, arguments, **kwargs)
        self.store.unbind(exchange or "amq.direct", routing_key or "", queue)

    def get_table(self, exchange: str) -> list[tuple[str, str | None, str]]:
        return self.store.bindings(exchange)

    # -- consuming ------------------------------------------------------------
    def basic_consume(self, queue: str, no_ack: bool, *args: Any, **kwargs: Any) -> Any:
        if no_ack:
            self._no_ack_queues.add(queue)
        self._exhausted_at = None
        self.connection._keeper.add(self)
        self.connection.attach_to_loop()
        return super().basic_consume(queue, no_ack, *args, **kwargs)

    def basic_cancel(self, consumer_tag: Any) -> Any:
        queue = self._tag_to_queue.get(consumer_tag)
        result = super().basic_cancel(consumer_tag)
        if queue is not None and queue not in self._active_queues:
            self._no_ack_queues.discard(queue)
            self._release_ring(keep=set(self._active_queues))
        return result

    def basic_get(self, queue: str, no_ack: bool = False, **kwargs: Any) -> Any:
        message = super().basic_get(queue, no_ack=no_ack, **kwargs)
        if message is not None and no_ack:
            self._settle(message.delivery_tag, ack=True)
        return message

    def _get(self, queue: str, timeout: float | None = None) -> dict[str, Any]:
        self.connection._keeper.add(self)
        for row in self.store.reserve([queue], 1, self.owner, self.visibility_timeout):
            payload = self._accept(row)
            if payload is not None:
                return payload
        raise Empty()

    def _accept(self, row: Reserved) -> dict[str, Any] | None:
        """Decode a leased row; dead-letter it when it cannot be decoded."""
        try:
            payload = json.loads(row.payload)
            properties = payload["properties"]
            tag = properties["delivery_tag"]
            body = payload.get("body")
            if body:
                self.decode_body(body, properties.get("body_encoding"))
        except Exception as exc:  # noqa: BLE001 - any failure makes it poison
            reason = f"undecodable message: {type(exc).__name__}: {exc}"[:1000]
            self.store.dead_letter(row.id, reason)
            return None
        if row.deliveries > 1:
            payload["redelivered"] = True
            properties.setdefault("delivery_info", {})["redelivered"] = True
        self._tag_ids[tag] = row.id
        return payload

    def deliver_one(self) -> bool:
        """Deliver one message to its consumer; False when there is none."""
        if not self._consumers:
            return False
        if not self.qos.can_consume():
            self._starved = True
            return False
        item = self._ring.pop()
        if item is None:
            self._refill()
            item = self._ring.pop()
            if item is None:
                return False
        queue, payload = item
        if queue in self._no_ack_queues:
            self._settle(payload["properties"]["delivery_tag"], ack=True)
        self.connection._deliver(payload, queue)
        return True

    def _refill(self) -> None:
        estimate = self.qos.can_consume_max_estimate()
        limit = self.connection.reserve_batch if estimate is None else estimate
        limit = min(limit, self._ring.capacity)
        generation = self.connection.generation
        if self._exhausted_at == generation:
            return
        queues = list(dict.fromkeys(self._active_queues))
        self.flush_acks()
        rows = self.store.reserve(queues, limit, self.owner, self.visibility_timeout)
        self._exhausted_at = generation if len(rows) < limit else None
        batch: list[tuple[int, tuple[str, dict[str, Any]]]] = []
        for row in rows:
            payload = self._accept(row)
            if payload is not None:
                batch.append((row.lane, (row.queue, payload)))
        self._ring.extend(batch)  # rows come sorted by lane: one deque.extend per lane

    # -- settling -------------------------------------------------------------
    def _settle(self, delivery_tag: Any, ack: bool) -> None:
        message_id = self._tag_ids.pop(delivery_tag, None)
        if message_id is None:
            return
        if ack:
            self._pending_acks.append(message_id)
            self.connection._keeper.poke()
        else:
            self.store.release([message_id], self.owner)
        if self._starved:
            self._starved = False
            self.connection.wake()

    def _release_tags(self, tags: list[Any]) -> None:
        ids = [i for i in (self._tag_ids.pop(t, None) for t in tags) if i is not None]
        if ids:
            self.store.release(ids, self.owner)

    def _release_ring(self, keep: set[str] | None = None) -> None:
        held = list(self._ring.drain())
        release = []
        for queue, payload in held:
            if keep is not None and queue in keep:
                self._ring.push(lane_for_priority(payload["properties"].get("priority")),
                                (queue, payload))
            else:
                release.append(payload["properties"]["delivery_tag"])
        self._release_tags(release)

    def flush_acks(self) -> None:
        """Delete acked messages from the store in one transaction."""
        if self._pending_acks:
            ids, self._pending_acks = self._pending_acks, []
            try:
                self.store.ack(ids)
            except BaseException:
                self._pending_acks[:0] = ids
                raise

    def keepalive(self) -> None:
        """Renew this channel's leases and keep its queues from expiring."""
        queues = [q for q in dict.fromkeys(self._active_queues) if q in self._expiring_queues]
        if queues:
            self.store.touch_queues(queues)
        held = list(self._tag_ids.values())  # delivered and unacked, or in the ring
        if held:
            self.store.renew(self.owner, self.visibility_timeout, held)

    def close(self) -> None:
        if self.closed:
            return
        try:
            for consumer in list(self._consumers):
                self.basic_cancel(consumer)
            self._release_ring()
            if self._qos is not None:
                self._qos.restore_unacked_once()
            self.flush_acks()
        finally:
            keeper = getattr(self.connection, "_keeper", None)
            if keeper is not None:
                keeper.discard(self)
            super().close()


class _Keeper:
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
            import logging

            logging.getLogger(__name__).exception("gorelay keeper: %s failed", fn)


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
        self.visibility_timeout = _number(options, "visibility_timeout", 30.0, 0.1)
        self.polling_interval = _number(options, "polling_interval", 1.0, 0.001)
        self.max_message_bytes = int(
            _number(options, "max_message_bytes", DEFAULT_MAX_MESSAGE_BYTES, 1)
        )
        self.reserve_batch = int(_number(options, "reserve_batch", 100, 1))
        self.ring_capacity = max(self.reserve_batch, 128)
        self._store_options = {
            k: v for k, v in options.items() if k in store_options
        }
        self._store: Store | None = None
        self._waiter: Any = None
        self._keeper = _Keeper(self)
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
