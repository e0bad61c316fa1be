"""The kombu channel of the gorelay transport: leases, lanes and shared routing.

* Publishing encodes kombu's message envelope as JSON and stores it in the
  lane of its priority, invisible until its Celery ``eta`` and dropped after
  its queue's ``x-message-ttl`` or its own ``expiration``.
* Consuming leases up to the prefetch window in one store call into a
  :class:`~gorelay_kombu.ringbuffer.LaneRing`, then hands kombu one message
  at a time, high lane first.  A message that cannot be decoded is moved to
  the dead-letter state with the reason.
* ``ack`` deletes in the store (batched, flushed by the consumer's next
  reserve or the keeper thread within milliseconds); ``reject(requeue=True)``
  and a clean close release the lease in place.
* Exchanges and bindings live in the store, so fanout and topic routing
  work between processes.
"""

from __future__ import annotations

import binascii
import itertools
import json
import os
import socket
import time
import uuid
from collections import deque
from dataclasses import replace
from datetime import datetime
from json.encoder import c_make_encoder, encode_basestring_ascii  # type: ignore[attr-defined]
from queue import Empty
from typing import TYPE_CHECKING, Any

from kombu.transport import virtual
from kombu.transport.base import to_rabbitmq_queue_arguments
from kombu.utils import json as kombu_json

from .errors import MessageTooLarge
from .priority import lane_for_priority
from .ringbuffer import LaneRing
from .storage import NewMessage, Reserved, Store

if TYPE_CHECKING:
    from .transport import Transport

DEFAULT_MAX_MESSAGE_BYTES = 16 * 1024 * 1024


_encoder = json.JSONEncoder(separators=(",", ":"), check_circular=False)


def _no_default(value: Any) -> Any:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


# The C encoder behind _encoder, made once (JSONEncoder.encode makes one per call).
_c_encode: Any = (
    None if c_make_encoder is None else c_make_encoder(
        None, _no_default, encode_basestring_ascii, None, ":", ",", False, False, True)
)


def _json(value: dict[str, Any]) -> str:
    try:
        if _c_encode is not None:
            return "".join(_c_encode(value, 0))
        return _encoder.encode(value)
    except TypeError:  # headers with datetimes, UUIDs...: kombu's encoder knows them
        return str(kombu_json.dumps(value))


def _dumps(message: dict[str, Any], base64_body: str | None = None) -> bytes:
    """The stored form of kombu's message envelope: compact JSON.

    ``base64_body``: the body when this channel base64-encoded it (only
    ``[A-Za-z0-9+/=]``): it goes in as it is, without the JSON encoder
    scanning every character.
    """
    body = message.get("body")
    if base64_body is None or body is not base64_body:
        return _json(message).encode()
    rest = message.copy()
    del rest["body"]
    tail = _json(rest)  # '{...}': the other keys, spliced in after the body
    if tail == "{}":
        return b'{"body":"' + body.encode("ascii") + b'"}'
    return b'{"body":"' + body.encode("ascii") + b'",' + tail[1:].encode()


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
        #: acked ids not yet deleted in the store; appended from any thread
        self._pending_acks: deque[int] = deque()
        self._no_ack_queues: set[str] = set()
        self._expiring_queues: set[str] = set()
        self._starved = False
        #: the transport's wake-up generation at which a reserve came back short:
        #: nothing new can be there until the next wake-up (publish, timer, due).
        self._exhausted_at: int | None = None
        #: the last body encode_body base64-encoded (see _dumps)
        self._base64_body: str | None = None

    # -- publishing -----------------------------------------------------------
    def _next_delivery_tag(self) -> str:
        """Unique across processes (random prefix), cheaper than a uuid4 each."""
        return f"{self._tag_prefix}{next(self._tag_counter)}"

    def encode_body(self, body: Any, encoding: str | None = None) -> tuple[Any, str | None]:
        """kombu's base64 codec, in one C call (the same text as ``base64.b64encode``)."""
        if encoding == "base64":
            raw = body.encode() if isinstance(body, str) else body
            encoded = self._base64_body = binascii.b2a_base64(raw, newline=False).decode("ascii")
            return encoded, encoding
        return super().encode_body(body, encoding)

    def prepare_message(self, body: Any, priority: Any = None, content_type: Any = None,
                        content_encoding: Any = None, headers: Any = None,
                        properties: Any = None) -> Any:
        """kombu's envelope, but an explicit priority always wins, 0 included
        (kombu's ``priority or default`` turns 0, the most urgent, into unset)."""
        properties = properties or {}
        properties.setdefault("delivery_info", {})
        if priority is not None:
            properties["priority"] = priority
        else:
            properties.setdefault("priority", self.default_priority)
        return {"body": body, "content-encoding": content_encoding,
                "content-type": content_type, "headers": headers or {},
                "properties": properties}

    def _inplace_augment_message(self, message: dict[str, Any], exchange: str,
                                 routing_key: str) -> None:
        """kombu's, with plain assignments (the same keys in the same order)."""
        message["body"], body_encoding = self.encode_body(message["body"], self.body_encoding)
        properties = message["properties"]
        properties["body_encoding"] = body_encoding
        properties["delivery_tag"] = f"{self._tag_prefix}{next(self._tag_counter)}"
        info = properties["delivery_info"]
        info["exchange"] = exchange
        info["routing_key"] = routing_key

    def basic_publish(self, message: dict[str, Any], exchange: str, routing_key: str,
                      **kwargs: Any) -> None:
        """Route a direct exchange (every Celery task) in the store, in one step.

        Topic and fanout exchanges go through kombu's exchange types; an
        unmatched direct message falls back to kombu's dead-letter rules.
        """
        try:
            if not exchange or self.typeof(exchange).type != "direct":
                return super().basic_publish(message, exchange, routing_key, **kwargs)
            self._inplace_augment_message(message, exchange, routing_key)
            if not self.store.put_routed(exchange, routing_key, self._encode("", message)):
                queues = sorted(q for q in self._lookup(exchange, routing_key) if q)
                if queues:
                    self._store(queues, message)
            return None
        finally:
            self._base64_body = None  # do not keep a large body alive

    def _encode(self, queue: str, message: dict[str, Any]) -> NewMessage:
        payload = _dumps(message, self._base64_body)
        limit = self.connection.max_message_bytes
        if len(payload) > limit:
            raise MessageTooLarge(
                f"A message of {len(payload)} bytes exceeds max_message_bytes={limit}. "
                "Store large data elsewhere and pass a reference, or raise "
                "max_message_bytes in broker_transport_options. Nothing was stored."
            )
        properties = message["properties"]
        return NewMessage(queue, payload, lane_for_priority(properties.get("priority")),
                          _visible_at(message), _expires_at(properties.get("expiration")))

    def _store(self, queues: list[str], message: dict[str, Any]) -> None:
        """Store one message in ``queues`` in one commit (encoded once)."""
        encoded = self._encode("", message)
        self.store.put_many([replace(encoded, queue=q) for q in queues])

    def _put(self, queue: str, message: dict[str, Any], **kwargs: Any) -> None:
        self._store([queue], message)

    def _put_fanout(self, exchange: str, message: dict[str, Any], routing_key: str,
                    **kwargs: Any) -> None:
        self.store.expire_idle_queues()  # broadcasts skip queues past their x-expires
        queues = sorted({q for _, _, q in self.store.bindings(exchange)})
        if queues:
            self._store(queues, message)

    # -- queues and bindings --------------------------------------------------
    def prepare_queue_arguments(self, arguments: Any, **kwargs: Any) -> Any:
        """Honour ``Queue(expires=..., message_ttl=...)`` as AMQP brokers do."""
        return to_rabbitmq_queue_arguments(arguments, **kwargs)

    def _new_queue(self, queue: str, **kwargs: Any) -> None:
        arguments = kwargs.get("arguments") or {}
        expires = _seconds(arguments.get("x-expires"))
        if expires is not None:
            self._expiring_queues.add(queue)
            # A queue past its x-expires is gone, as on an AMQP broker, even if no
            # consumer process was running to expire it: never revive its messages
            # (a dead worker's pidbox must not replay old control commands).
            self.store.expire_idle_queues()
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
        pending = self._pending_acks
        ids: list[int] = []
        while pending:  # popleft and append are atomic: no ack is lost to a race
            ids.append(pending.popleft())
        if ids:
            try:
                self.store.ack(ids)
            except BaseException:
                pending.extendleft(reversed(ids))
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
