"""Redis store: the same durable semantics as SQLite, on a Redis server.

Features: leases with renewal (a consumer that dies loses nothing, a long
task is not delivered twice), ETA messages in a sorted set that are never
delivered before they are due, three priority lanes served strictly high to
low and FIFO inside a lane, shared bindings for fanout and topic, batch
reserve, message TTL and idle-queue expiry, key/value for results (with
wake-ups for result waiters), per-lane queue statistics and the task history.
Every state change of a queue is one atomic Lua script (see :mod:`.redis_lua`,
whose comments list the keys each script touches).  Consumers wake on a
pub/sub message published by the put and release scripts: no polling.

URL: ``gorelay+redis://[[user]:password@]host:6379/0`` or
``gorelay+rediss://...`` for TLS (any ``redis://`` query option of redis-py,
such as ``ssl_cert_reqs``, passes through).

Options (``transport_options`` or the URL's query string):

* ``key_prefix``: the start of every key and of the wake-up channel
  (default ``gorelay:``); stores with different prefixes share nothing.
* ``socket_timeout`` / ``socket_connect_timeout``: seconds (default 30 / 5).
* ``max_connections``: connection pool size per process (default unlimited).
* ``publish_routing``: ``server`` (default) routes a direct publish and stores
  it in every matching queue in one Lua script, one round trip; ``client``
  reads the bindings first, then stores (two round trips, but every script
  stays on one cluster slot).

Key layout (``P`` is the prefix): each queue's keys share the hash tag of its
name, ``P{queue}:r0`` ... (see ``QUEUE_KEYS``), so every per-queue script
runs on one Redis Cluster slot.  Registry, bindings and exchange types live
under ``P{%}:`` (one slot), key/value under ``P kv:<key>`` (:mod:`.redis_kv`),
the task history under ``P{%h}:`` (one slot; :mod:`gorelay_kombu.history.redis`).
Operations that span queues are a per-queue script for each queue, sent in
one pipeline:
``put_many`` to several queues (fanout), ``reserve`` from several queues (a
probe of every queue, then a lease from each; a concurrent consumer may take
some in between, so fewer may be returned), ``ack``/``release``/``renew`` of
ids from several queues, and ``delete_queue`` (bindings, then messages).
Each queue's part is atomic; the whole is not a transaction.  The store
connects to one server (standalone, or a primary behind a proxy); a Redis
Cluster client is not wired in yet.

``put_routed`` (every Celery task publish) is **standalone-only** by default:
its ``ROUTE`` script reads ``P{%}:b:<exchange>`` and derives the keys of each
matching queue itself, so it touches several slots; it is atomic and never
routes from a stale copy of the bindings.  ``publish_routing=client`` keeps
the cluster-safe two-step path (the base ``Store.put_routed``).

Wake-ups: a put publishes on the wake channel only when its queue had no
ready message before (or the message has an ETA); consumers wait only after a
reserve that found nothing ready, and a multi-queue reserve makes another
pass rather than return short while ready messages remain.

Durability depends on the server: with ``appendonly yes`` and
``appendfsync everysec`` a restart loses at most the last second; without
persistence a restart loses every message.  Connection errors raise
:class:`StoreUnavailable` (Celery reconnects); redis-py reconnects on the
next call, and the waiter re-subscribes by itself.

``next_due`` reads the earliest ETA and lease of every queue in the registry
(one pipeline); a process registers a queue at its first put, so a queue
another process deleted and this one refills is found again only once the
process re-declares it (until then its ETAs wake consumers at the polling
interval; reserve still restores them).

Message ids are ``seq << 24 | queue number``: ``seq`` counts per queue, the
queue number is allocated once per queue name and never reused.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ..errors import (
    GoRelayError,
    InvalidOption,
    InvalidURL,
    StoreAuthenticationError,
    StoreError,
    StoreKeyConflict,
    StorePermissionError,
    StoreUnavailable,
    UnsupportedStore,
)
from ..options import number_option
from . import redis_lua as lua
from .base import NewMessage, Reserved, Store, Waiter
from .redis_inspect import RedisInspect
from .redis_kv import RedisKeyValue
from .redis_waiter import RedisWaiter

if TYPE_CHECKING:
    from ..history import History

try:
    import redis
    from redis.exceptions import NoScriptError
except ModuleNotFoundError as _exc:  # pragma: no cover - depends on the install
    if _exc.name != "redis":
        raise
    redis = None  # type: ignore[assignment]

QNO_BITS = 24
QNO_MASK = (1 << QNO_BITS) - 1
_TRANSIENT_REPLIES = ("LOADING", "BUSY", "READONLY", "MASTERDOWN", "TRYAGAIN", "CLUSTERDOWN",
                      "OOM", "NOREPLICAS")


_Lua = lua.Script

PUT, RESERVE, ACK, RELEASE, RENEW, DEAD, PURGE, DECLARE, DROP = (
    _Lua(s) for s in (lua.PUT, lua.RESERVE, lua.ACK, lua.RELEASE, lua.RENEW, lua.DEAD,
                      lua.PURGE, lua.DECLARE, lua.DROP)
)
NUMBER, REGISTER, TOUCH, UNREGISTER, ROUTE = (
    _Lua(s) for s in (lua.NUMBER, lua.REGISTER, lua.TOUCH, lua.UNREGISTER, lua.ROUTE)
)
PUBLISH_ROUTING = ("server", "client")


def _tag(name: str) -> str:
    """A queue name as a hash tag: braces escaped, never empty, never ``%``."""
    if not name:
        return "%00"
    return name.replace("%", "%25").replace("{", "%7B").replace("}", "%7D")


def _num(x: float) -> str:
    return repr(float(x))


class RedisStore(RedisKeyValue, RedisInspect, Store):
    """The Redis store; see the module docstring."""

    kind = "redis"
    wakes_on_publish = True
    options = frozenset({"key_prefix", "socket_timeout", "socket_connect_timeout",
                         "max_connections", "publish_routing"})
    key_prefix = "gorelay:"
    publish_routing = "server"
    socket_timeout = 30.0
    socket_connect_timeout = 5.0

    def __init__(self, location: str, options: dict[str, Any] | None = None) -> None:
        if redis is None:
            raise UnsupportedStore(
                'The Redis store needs the redis driver: pip install "gorelay-kombu[redis]"'
            )
        opts = dict(options or {})
        prefix = str(opts.get("key_prefix", self.key_prefix))
        if not prefix or "{" in prefix or "}" in prefix or any(c in prefix for c in "*?[]"):
            raise InvalidOption(
                f"key_prefix={prefix!r} must be non-empty without braces or glob characters "
                "(braces would break the per-queue hash tags); e.g. key_prefix='myapp:'."
            )
        self.key_prefix = prefix
        self.socket_timeout = number_option(opts, "socket_timeout", self.socket_timeout, 0,
                                            exclusive=True)
        self.socket_connect_timeout = number_option(
            opts, "socket_connect_timeout", self.socket_connect_timeout, 0, exclusive=True)
        routing = str(opts.get("publish_routing", self.publish_routing)).lower()
        if routing not in PUBLISH_ROUTING:
            raise InvalidOption(
                f"publish_routing={opts.get('publish_routing')!r} must be 'server' (route "
                "and insert in one Lua script: standalone Redis) or 'client' (read the "
                "bindings, then insert: every script on one cluster slot)."
            )
        self.publish_routing = routing
        self.max_connections = (None if opts.get("max_connections") is None else
                                int(number_option(opts, "max_connections", 1, 0, exclusive=True)))
        self.url = location
        parts = urlsplit(location)
        self.where = f"{parts.hostname or 'localhost'}:{parts.port or 6379}{parts.path or '/0'}"
        self.channel = f"{prefix}wake"
        self._g = f"{prefix}{{%}}:"
        self._qkeys: dict[str, list[str]] = {}
        self._qno: dict[str, int] = {}
        self._qname: dict[int, str] = {}
        self._registered: set[str] = set()
        self._pid = os.getpid()
        self._redis = self._connect()
        with self._errors():
            self._redis.ping()

    # -- connections and errors -------------------------------------------------
    def _connect(self) -> Any:
        self.client_name = f"gorelay-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        kwargs: dict[str, Any] = {
            "socket_timeout": self.socket_timeout,
            "socket_connect_timeout": self.socket_connect_timeout,
            "health_check_interval": 30,
            "client_name": self.client_name,
        }
        if self.max_connections is not None:
            kwargs["max_connections"] = self.max_connections
        try:
            return redis.Redis.from_url(self.url, **kwargs)
        except ValueError as exc:
            raise InvalidURL(
                f"Cannot use the Redis URL {self.where!r}: {exc}. Write "
                "gorelay+redis://[:password@]host:6379/0 (or gorelay+rediss:// for TLS)."
            ) from exc

    def _client(self) -> Any:
        if self._pid != os.getpid():
            # After fork (Celery prefork): never share the parent's sockets.
            self._pid = os.getpid()
            self._redis = self._connect()
        return self._redis

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        """Wrap redis-py errors at the boundary; each message names the fix."""
        try:
            yield
        except redis.AuthenticationError as exc:
            raise StoreAuthenticationError(
                f"Redis at {self.where} refused the credentials in the URL ({exc}). Put the "
                "right password in the URL (gorelay+redis://:PASSWORD@host:6379/0, or "
                "USER:PASSWORD@ for an ACL user; percent-encode special characters)."
            ) from exc
        except redis.exceptions.NoPermissionError as exc:
            raise StorePermissionError(
                f"The Redis user lacks a permission gorelay needs ({exc}). Grant it keys "
                f"'~{self.key_prefix}*', channel '&{self.key_prefix}*' and the commands "
                "+@read +@write +@scripting +@pubsub +ping +client."
            ) from exc
        except redis.ResponseError as exc:
            raise self._reply_error(exc) from exc
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise StoreUnavailable(
                f"Redis at {self.where} is unreachable ({exc}). Check that redis-server is "
                "running and that the URL's host and port are right; gorelay reconnects "
                "on its own once the server is back."
            ) from exc
        except redis.RedisError as exc:
            raise StoreError(f"Redis at {self.where} failed: {exc}") from exc

    def _reply_error(self, exc: Exception) -> GoRelayError:
        text = str(exc)
        if text.startswith("WRONGTYPE") or "WRONGTYPE" in text:
            return StoreKeyConflict(
                f"A key under the prefix {self.key_prefix!r} in Redis {self.where} holds a "
                "value of another type: another program (or an old version) uses this "
                "prefix. Give gorelay its own prefix (transport option key_prefix='myapp:') "
                "or database (/1 ... /15 in the URL), or delete the stale keys "
                f"(redis-cli --scan --pattern '{self.key_prefix}*')."
            )
        if "DB index is out of range" in text or "invalid DB index" in text:
            return InvalidURL(
                f"Redis at {self.where} has no such database ({text}). Use a database "
                "number the server has (0-15 by default) at the end of the URL."
            )
        if text.split(" ", 1)[0] in ("MOVED", "ASK", "CROSSSLOT"):
            return InvalidURL(
                f"Redis at {self.where} is a cluster node ({text}); the gorelay Redis store "
                "does not drive Redis Cluster yet. Point the URL at a standalone server."
            )
        if text.split(" ", 1)[0] in _TRANSIENT_REPLIES:
            return StoreUnavailable(
                f"Redis at {self.where} cannot serve writes right now ({text}); retrying. "
                "If it persists: OOM means raise maxmemory or use a noeviction policy "
                "with room; READONLY means the URL names a replica, use the primary."
            )
        return StoreError(f"Redis at {self.where} refused a command: {text}")

    # -- scripts --------------------------------------------------------------------
    def _eval(self, script: _Lua, keys: Sequence[str], args: Sequence[Any]) -> Any:
        client = self._client()
        with self._errors():
            try:
                return client.evalsha(script.sha, len(keys), *keys, *args)
            except NoScriptError:  # a restarted server or SCRIPT FLUSH
                client.script_load(script.text)
                return client.evalsha(script.sha, len(keys), *keys, *args)

    def _batch(self, calls: Sequence[tuple[Any, ...]]) -> list[Any]:
        """Scripts ``(script, keys, args)`` and commands ``("CMD", *args)`` in one pipeline."""
        if len(calls) == 1 and isinstance(calls[0][0], _Lua):
            return [self._eval(*calls[0])]
        with self._errors():
            pipe = self._client().pipeline(transaction=False)
            for call in calls:
                if isinstance(call[0], _Lua):
                    script, keys, args = call
                    pipe.evalsha(script.sha, len(keys), *keys, *args)
                else:
                    pipe.execute_command(*call)
            results = pipe.execute(raise_on_error=False)
        for i, result in enumerate(results):
            if isinstance(result, NoScriptError):
                results[i] = self._eval(*calls[i])
        for result in results:
            if isinstance(result, Exception):
                with self._errors():
                    raise result
        return list(results)

    def _keys(self, queue: str) -> list[str]:
        keys = self._qkeys.get(queue)
        if keys is None:
            stem = f"{self.key_prefix}{{{_tag(queue)}}}:"
            keys = self._qkeys[queue] = [stem + suffix for suffix in lua.QUEUE_KEYS]
        return keys

    def _gkeys(self, *names: str) -> list[str]:
        return [self._g + name for name in names]

    def _number(self, queue: str) -> int:
        number = self._qno.get(queue)
        if number is None:
            number = int(self._eval(NUMBER, self._gkeys("qno", "qname", "qseq"), [queue]))
            if number > QNO_MASK:
                raise StoreError(
                    f"More than {QNO_MASK} queue names were used under the prefix "
                    f"{self.key_prefix!r}; start a fresh prefix (key_prefix option)."
                )
            self._qno[queue], self._qname[number] = number, queue
        return number

    def _queue_of(self, message_id: int) -> str | None:
        number = message_id & QNO_MASK
        queue = self._qname.get(number)
        if queue is None:
            with self._errors():
                raw = self._client().hget(self._g + "qname", number)
            if raw is None:
                return None
            queue = raw.decode()
            self._qname[number], self._qno[queue] = queue, number
        return queue

    def _by_queue(self, ids: Iterable[int]) -> dict[str, list[str]]:
        groups: dict[str, list[str]] = {}
        for message_id in ids:
            queue = self._queue_of(int(message_id))
            if queue is not None:
                groups.setdefault(queue, []).append(str(int(message_id) >> QNO_BITS))
        return groups

    # -- queues -----------------------------------------------------------------------
    def declare_queue(
        self, queue: str, message_ttl: float | None = None, expires: float | None = None
    ) -> None:
        ttl = "" if message_ttl is None else _num(message_ttl)
        created = int(self._eval(DECLARE, self._keys(queue), [ttl]))
        self._eval(REGISTER, self._gkeys("queues", "qexp", "idle"),
                   [queue, created, "" if expires is None else _num(expires), _num(time.time())])
        self._number(queue)

    def touch_queues(self, queues: Sequence[str]) -> None:
        if queues:
            self._eval(TOUCH, self._gkeys("qexp", "idle"), [_num(time.time()), *queues])

    def expire_idle_queues(self) -> list[str]:
        names = self._eval(UNREGISTER, self._gkeys("queues", "qexp", "idle"),
                           [self._g, "", _num(time.time())])
        idle = [n.decode() for n in names]
        self._registered.difference_update(idle)
        if idle:
            self._batch([(DROP, self._keys(q), []) for q in idle])
        return idle

    def has_queue(self, queue: str) -> bool:
        with self._errors():
            return bool(self._client().hexists(self._keys(queue)[12], "d"))

    def delete_queue(self, queue: str) -> None:
        # Bindings first, so no fanout lands in the queue while it goes.
        self._eval(UNREGISTER, self._gkeys("queues", "qexp", "idle"), [self._g, "-", queue])
        self._eval(DROP, self._keys(queue), [])
        self._registered.discard(queue)

    def put_many(self, messages: Sequence[NewMessage]) -> list[int]:
        if not messages:
            return []
        now = _num(time.time())
        groups: dict[str, list[int]] = {}
        for i, m in enumerate(messages):
            groups.setdefault(m.queue, []).append(i)
        numbers = {q: self._number(q) for q in groups}
        calls: list[tuple[Any, ...]] = []
        for queue, indexes in groups.items():
            args: list[Any] = [now, self.channel]
            for i in indexes:
                m = messages[i]
                args += [m.lane, _num(m.visible_at),
                         "" if m.expires_at is None else _num(m.expires_at), m.payload]
            calls.append((PUT, self._keys(queue), args))
        new = [q for q in groups if q not in self._registered]
        if new:  # the registry lets next_due find the queue; once per queue and process
            calls.append(("SADD", self._g + "queues", *new))
        results = self._batch(calls)
        self._registered.update(new)
        ids = [0] * len(messages)
        for (queue, indexes), seqs in zip(groups.items(), results[:len(groups)], strict=True):
            for i, seq in zip(indexes, seqs, strict=True):
                ids[i] = (int(seq) << QNO_BITS) | numbers[queue]
        return ids

    def put_routed(self, exchange: str, routing_key: str, message: NewMessage) -> int:
        """Direct routing and the insert into every matching queue in one round trip.

        One ``ROUTE`` script reads the exchange's bindings and runs the put of
        each matching queue, atomically: never routed from a stale copy.  It
        spans slots (standalone servers only); ``publish_routing="client"``
        selects the base two-step version instead.
        """
        if self.publish_routing != "server":
            return super().put_routed(exchange, routing_key, message)
        head = "[" + json.dumps(routing_key) + ", "
        m = message
        return int(self._eval(
            ROUTE, (self._g + "b:" + exchange, self._g + "queues"),
            (self.key_prefix, head, _num(time.time()), self.channel, m.lane,
             _num(m.visible_at), "" if m.expires_at is None else _num(m.expires_at),
             m.payload)))

    def reserve(
        self, queues: Sequence[str], limit: int, owner: str, lease: float
    ) -> list[Reserved]:
        if limit <= 0 or not queues:
            return []
        queues = list(dict.fromkeys(queues))
        now = time.time()
        head = [_num(now), _num(now + lease), owner]
        if len(queues) == 1:
            flat = self._eval(RESERVE, self._keys(queues[0]), [*head, limit, limit, limit, limit])
            return self._rows(queues[0], flat)
        rows: list[Reserved] = []
        # A short result must mean "nothing ready" (consumers then wait for a wake-up,
        # which a put sends only into an empty queue): messages put between the probe
        # and the lease, beyond the probed counts, are leased by another pass.
        for _ in range(16):
            got, more = self._reserve_pass(queues, limit - len(rows), head)
            rows += got
            if len(rows) >= limit or not more:
                break
        rows.sort(key=lambda r: (r.lane, r.id))
        return rows

    def _reserve_pass(self, queues: list[str], limit: int,
                      head: list[Any]) -> tuple[list[Reserved], bool]:
        """Probe every queue, then lease from each; return the rows and whether
        ready messages may be left that this pass did not try to lease."""
        counts = self._batch([(RESERVE, self._keys(q), [*head, 0, 0, 0, 0]) for q in queues])
        # Service order as SQLite: lane first, then the queue's rank in ``queues``.
        quotas = {q: [0, 0, 0] for q in queues}
        left = limit
        for lane in range(3):
            for queue, count in zip(queues, counts, strict=True):
                take = min(int(count[lane]), left)
                quotas[queue][lane] += take
                left -= take
        chosen = [q for q in queues if sum(quotas[q])]
        unserved = any(sum(int(n) for n in count) > sum(quotas[q])
                       for q, count in zip(queues, counts, strict=True))
        if not chosen:
            return [], False
        results = self._batch([(RESERVE, self._keys(q), [*head, sum(quotas[q]), *quotas[q]])
                               for q in chosen])
        rows = [r for q, flat in zip(chosen, results, strict=True) for r in self._rows(q, flat)]
        return rows, unserved or any(int(flat[-1]) for flat in results)

    def _rows(self, queue: str, flat: list[Any]) -> list[Reserved]:
        """Rows of a lease reply (its last item, the ready count left, is skipped)."""
        if len(flat) <= 1:
            return []
        number = self._number(queue)
        return [
            Reserved((int(flat[i]) << QNO_BITS) | number, queue, int(flat[i + 1]),
                     bytes(flat[i + 3]), int(flat[i + 2]))
            for i in range(0, len(flat) - 1, 4)
        ]

    def ack(self, ids: Iterable[int]) -> None:
        groups = self._by_queue(ids)
        if groups:
            self._batch([(ACK, self._keys(q), seqs) for q, seqs in groups.items()])

    def release(self, ids: Iterable[int], owner: str) -> None:
        groups = self._by_queue(ids)
        if groups:
            self._batch([(RELEASE, self._keys(q), [owner, self.channel, *seqs])
                         for q, seqs in groups.items()])

    def renew(self, owner: str, lease: float, ids: Iterable[int]) -> int:
        groups = self._by_queue(ids)
        if not groups:
            return 0
        until = _num(time.time() + lease)
        results = self._batch([(RENEW, self._keys(q), [owner, until, *seqs])
                               for q, seqs in groups.items()])
        return sum(int(n) for n in results)

    def dead_letter(self, message_id: int, reason: str) -> None:
        queue = self._queue_of(int(message_id))
        if queue is not None:
            self._eval(DEAD, self._keys(queue), [str(int(message_id) >> QNO_BITS), reason])

    def dead_letters(self, queue: str) -> list[tuple[int, str, bytes]]:
        keys = self._keys(queue)
        with self._errors():
            client = self._client()
            seqs = client.zrange(keys[10], 0, -1)
            if not seqs:
                return []
            pipe = client.pipeline(transaction=False)
            pipe.hmget(keys[11], seqs)
            pipe.hmget(keys[9], seqs)
            reasons, payloads = pipe.execute()
        number = self._number(queue)
        return [((int(s) << QNO_BITS) | number, (r or b"").decode(), bytes(p or b""))
                for s, r, p in zip(seqs, reasons, payloads, strict=True)]

    def size(self, queue: str) -> int:
        keys = self._keys(queue)
        return sum(int(n) for n in self._batch([("ZCARD", k) for k in keys[:4]]))

    def purge(self, queue: str) -> int:
        return int(self._eval(PURGE, self._keys(queue), []))

    def next_due(self) -> float | None:
        with self._errors():
            client = self._client()
            queues = client.smembers(self._g + "queues")
            if not queues:
                return None
            pipe = client.pipeline(transaction=False)
            for raw in queues:
                keys = self._keys(raw.decode())
                pipe.zrange(keys[3], 0, 0, withscores=True)
                pipe.zrange(keys[4], 0, 0, withscores=True)
            heads = pipe.execute()
        scores = [pairs[0][1] for pairs in heads if pairs]
        return min(scores) if scores else None

    def waiter(self) -> Waiter:
        return RedisWaiter(self._client().pubsub(), self.channel, self._errors,
                           max(self.socket_timeout, 1.0))

    # -- bindings ---------------------------------------------------------------------
    def declare_exchange(self, exchange: str, type: str) -> None:
        with self._errors():
            self._client().hsetnx(self._g + "xt", exchange, type)

    def exchange_type(self, exchange: str) -> str | None:
        with self._errors():
            raw = self._client().hget(self._g + "xt", exchange)
        return None if raw is None else raw.decode()

    def bind(self, exchange: str, routing_key: str, pattern: str | None, queue: str) -> None:
        field = json.dumps([routing_key, queue])
        with self._errors():  # MULTI/EXEC on two {%} keys: atomic, one slot
            pipe = self._client().pipeline(transaction=True)
            pipe.hset(self._g + "b:" + exchange, field, json.dumps(pattern))
            pipe.sadd(self._g + "bq:" + queue, json.dumps([exchange, field]))
            pipe.execute()

    def unbind(self, exchange: str, routing_key: str, queue: str) -> None:
        field = json.dumps([routing_key, queue])
        with self._errors():
            pipe = self._client().pipeline(transaction=True)
            pipe.hdel(self._g + "b:" + exchange, field)
            pipe.srem(self._g + "bq:" + queue, json.dumps([exchange, field]))
            pipe.execute()

    def bindings(self, exchange: str) -> list[tuple[str, str | None, str]]:
        with self._errors():
            table = self._client().hgetall(self._g + "b:" + exchange)
        result = []
        for field, pattern in table.items():
            routing_key, queue = json.loads(field)
            result.append((routing_key, json.loads(pattern), queue))
        return result

    # -- history (key/value: .redis_kv; queue_stats: .redis_inspect) ---------------
    def history(self) -> History:
        from ..history.redis import RedisHistory

        return RedisHistory(self)

    # -- lifecycle --------------------------------------------------------------------
    def close(self) -> None:
        if self._pid == os.getpid():
            with contextlib.suppress(Exception):
                self._redis.close()
