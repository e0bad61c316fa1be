"""PostgreSQL store: many workers on many machines, one database.

Features: everything the store contract requires, shared by every process
and host that opens the same database and schema.  Consumers lease batches
with ``FOR UPDATE SKIP LOCKED`` (competing consumers never block each other
and never get the same message); leases with renewal and restore, ETA
messages stored invisible, three priority lanes, dead letters, shared
bindings, key/value.  Publishers ``NOTIFY`` in the transaction of the insert
and consumers ``LISTEN``, so an idle worker wakes within milliseconds without
polling; ``kv_set(..., notify=True)`` notifies a second channel
(``gorelay.<schema>.kv``) that only result waiters listen on.  Counters and
add-if-absent are single statements (``INSERT .. ON CONFLICT``).  The task
history lives in the same schema (``history_*`` tables, created on first
use; see :mod:`gorelay_kombu.history.postgres`).  Connections come from a
psycopg 3 pool per process (a forked child opens its own); a connection the
server dropped (restart, failover, ``pg_terminate_backend``) is replaced on
its own, and the error of the one operation that hit it is
:class:`StoreUnavailable`, which kombu and Celery retry.  Times are epoch
seconds from the clients' clocks: keep hosts in sync (NTP), as leases and
ETAs compare them.

URL: ``gorelay+postgresql://user:password@host:5432/dbname`` (also
``gorelay+postgres://``); any libpq URL works after the ``gorelay+``.

Options (``transport_options`` or the URL's query string):

* ``schema``: the PostgreSQL schema holding gorelay's tables (default
  ``gorelay``), so they never mix with the application's; created on first
  use when the user may (``GRANT CREATE ON DATABASE``), else create it for
  them once.
* ``synchronous_commit``: ``on`` (default: a publish returns only after its
  WAL record is flushed, so it survives a crash of the server or its machine)
  or ``off`` (faster; a committed message survives a crash of any client and
  a clean server restart, but a crash of the server may lose the commits of
  the last ~0.6 s, never corrupting anything); ``local``, ``remote_write``,
  ``remote_apply`` as in PostgreSQL.
* ``pool_size``: most connections per process (default 10).
* ``connect_timeout``: seconds to wait for a connection (default 10).
* ``sslmode``, ``sslrootcert``, ``sslcert``, ``sslkey``, ``application_name``,
  ``target_session_attrs``: passed to libpq.

Schema: versioned in ``<schema>.meta``; creation is idempotent (serialised
by an advisory lock), and a schema written by a newer release is refused
with :class:`SchemaVersionError`.
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from ..errors import (
    InvalidOption,
    SchemaVersionError,
    StoreError,
    StorePermissionError,
    StoreUnavailable,
)
from ..options import number_option
from . import postgres_sql as queries
from .base import READY, SCHEDULED, NewMessage, QueueStats, Reserved, Store, Waiter
from .postgres_errors import connect_error, first_line, operation_error

try:
    import psycopg
    from psycopg import errors as pg_errors
    from psycopg import pq, sql
    from psycopg.conninfo import conninfo_to_dict, make_conninfo
    from psycopg_pool import ConnectionPool, PoolTimeout
except ModuleNotFoundError as exc:  # pragma: no cover - depends on the installation
    raise ModuleNotFoundError(
        f"The PostgreSQL store needs psycopg 3 and psycopg_pool ({exc.name} is missing): "
        'pip install "gorelay-kombu[postgres]"',
        name=exc.name,
    ) from exc

if TYPE_CHECKING:
    from ..history import History

T = TypeVar("T")

SCHEMA_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,47}$")
SYNCHRONOUS_COMMIT = ("off", "local", "remote_write", "on", "remote_apply")
LIBPQ_OPTIONS = frozenset({
    "sslmode", "sslrootcert", "sslcert", "sslkey", "application_name", "target_session_attrs",
})
#: seconds between expired key/value clean-ups (in maintain)
KV_SWEEP_SECONDS = 60.0
#: pools of a parent process, kept (never closed, never collected) in a forked child
_ORPHANS: list[Any] = []


class _NoConnection(StoreUnavailable):
    """The pool had no working connection within ``connect_timeout``."""


class PostgresStore(Store):
    """The PostgreSQL store; see the module docstring."""

    kind = "postgresql"
    wakes_on_publish = True
    options = frozenset({"schema", "pool_size", "connect_timeout", "synchronous_commit"}) \
        | LIBPQ_OPTIONS
    schema = "gorelay"
    synchronous_commit = "on"
    pool_size = 10
    connect_timeout = 10.0

    def __init__(self, location: str, options: dict[str, Any] | None = None) -> None:
        opts = dict(options or {})
        unknown = sorted(set(opts) - self.options)
        if unknown:
            raise InvalidOption(
                f"Unknown PostgreSQL store option(s) {unknown}; known: {sorted(self.options)}."
            )
        self.schema = str(opts.get("schema", self.schema))
        if not SCHEMA_NAME.match(self.schema):
            raise InvalidOption(
                f"schema={self.schema!r} is not a plain PostgreSQL name; use letters, digits "
                "and underscores (up to 48, not starting with a digit), e.g. schema=gorelay."
            )
        self.synchronous_commit = str(opts.get("synchronous_commit",
                                               self.synchronous_commit)).lower()
        if self.synchronous_commit not in SYNCHRONOUS_COMMIT:
            raise InvalidOption(
                f"synchronous_commit={opts['synchronous_commit']!r} is not supported; use one "
                f"of {', '.join(SYNCHRONOUS_COMMIT)} (off survives a crash of any client and a "
                "clean server restart; on also survives a server crash or power loss)."
            )
        self.pool_size = int(number_option(opts, "pool_size", self.pool_size, 1))
        self.connect_timeout = number_option(opts, "connect_timeout", self.connect_timeout, 0.1)
        libpq = {k: str(v) for k, v in opts.items() if k in LIBPQ_OPTIONS}
        try:
            self.conninfo = make_conninfo(
                location, connect_timeout=max(int(self.connect_timeout), 1), **libpq)
            params = conninfo_to_dict(self.conninfo)
        except psycopg.ProgrammingError as exc:
            raise InvalidOption(
                f"The PostgreSQL URL could not be parsed: {exc}. Use "
                "gorelay+postgresql://user:password@host:5432/dbname."
            ) from exc
        self.host = str(params.get("host") or "localhost")
        self.port = str(params.get("port") or "5432")
        self.dbname = str(params.get("dbname") or params.get("user") or "")
        self.user = str(params.get("user") or os.environ.get("PGUSER") or "")
        self.display = f"postgresql://{self.user}@{self.host}:{self.port}/{self.dbname}"
        self.channel = f"gorelay.{self.schema}"
        #: NOTIFY channel of kv_set(notify=True): results never wake queue consumers
        self.kv_channel = f"gorelay.{self.schema}.kv"
        ident = sql.Identifier(self.schema)
        self._sql: dict[str, str] = {}
        self._ident = ident
        self._pool: ConnectionPool[Any] | None = None
        self._pool_lock = threading.Lock()
        self._pid = os.getpid()
        self._kv_swept = 0.0
        self._history: History | None = None
        self._history_lock = threading.Lock()
        self._setup()

    def q(self, template: str) -> str:
        """``template`` with the schema filled in (cached)."""
        text = self._sql.get(template)
        if text is None:
            text = sql.SQL(template).format(s=self._ident).as_string(None)
            self._sql[template] = text
        return text

    # -- connections ----------------------------------------------------------
    def connect(self, **kwargs: Any) -> psycopg.Connection[Any]:
        """A new connection outside the pool; errors say what to fix."""
        try:
            return psycopg.connect(self.conninfo, autocommit=True, **kwargs)
        except psycopg.OperationalError as exc:
            raise self._connect_error(exc) from exc

    def _connect_error(self, exc: psycopg.Error) -> StoreError:
        return connect_error(self, exc)

    def _get_pool(self) -> ConnectionPool[Any]:
        if os.getpid() != self._pid:
            # After fork: never use (nor close) the parent's connections.
            _ORPHANS.append(self._pool)
            self._pool, self._pid = None, os.getpid()
            self._pool_lock = threading.Lock()
        pool = self._pool
        if pool is None:
            with self._pool_lock:
                pool = self._pool
                if pool is None:
                    pool = ConnectionPool(
                        self.conninfo, kwargs={"autocommit": True}, min_size=1,
                        max_size=self.pool_size, open=False, check=_check_connection,
                        configure=self._configure,
                        timeout=self.connect_timeout, name=f"gorelay-{self.schema}",
                    )
                    pool.open(wait=False)
                    self._pool = pool
        return pool

    def _listen(self) -> psycopg.Connection[Any]:
        """A new connection for the waiter (outside the pool)."""
        conn = self.connect()
        try:
            conn.execute(queries.SQL_SET_SYNCHRONOUS_COMMIT, (self.synchronous_commit,))
        except psycopg.Error as exc:
            conn.close()
            raise self._wrap(exc) from exc
        return conn

    def _configure(self, conn: psycopg.Connection[Any]) -> None:
        conn.execute(queries.SQL_SET_SYNCHRONOUS_COMMIT, (self.synchronous_commit,))

    @contextlib.contextmanager
    def _conn(self) -> Iterator[psycopg.Connection[Any]]:
        try:
            with self._get_pool().connection() as conn:
                yield conn
        except PoolTimeout as exc:
            raise _NoConnection(
                f"No PostgreSQL connection to {self.display} within {self.connect_timeout}s: "
                f"{first_line(str(exc))}. Check that the server is up; Celery retries, or "
                "raise connect_timeout/pool_size."
            ) from exc
        except psycopg.Error as exc:
            raise self._wrap(exc) from exc

    def _wrap(self, exc: psycopg.Error) -> StoreError:
        return operation_error(self, exc)

    def _run(self, fn: Callable[[psycopg.Connection[Any]], T], idempotent: bool = False) -> T:
        """Run ``fn`` on a pooled connection; retry once on a dropped one if safe."""
        try:
            with self._conn() as conn:
                return fn(conn)
        except _NoConnection:
            raise  # already waited connect_timeout for one
        except StoreUnavailable:
            if not idempotent:
                raise
        with self._conn() as conn:
            return fn(conn)

    def _fetch(self, template: str, params: Any = (), idempotent: bool = True) -> list[Any]:
        text = self.q(template)
        return self._run(lambda c: c.execute(text, params).fetchall(), idempotent)

    def _exec(self, template: str, params: Any = (), idempotent: bool = True) -> int:
        text = self.q(template)
        return self._run(lambda c: c.execute(text, params).rowcount, idempotent)

    def _setup(self) -> None:
        conn = self.connect(connect_timeout=max(int(self.connect_timeout), 1))
        try:
            if self._version(conn) == queries.SCHEMA_VERSION:
                return  # the usual case: nothing to create, no lock taken
            with conn.transaction():
                conn.execute(queries.SQL_LOCK_SCHEMA, (self.channel,))
                if not conn.execute(queries.SQL_SCHEMA_EXISTS, (self.schema,)).fetchone():
                    conn.execute(self.q(queries.SQL_CREATE_SCHEMA))
                version = self._version(conn)
                if version is None:
                    for statement in queries.SCHEMA.split(";"):
                        conn.execute(self.q(statement.strip()))
                    version_sql = self.q(queries.SQL_SET_VERSION)
                    conn.execute(version_sql, (str(queries.SCHEMA_VERSION),))
        except pg_errors.InsufficientPrivilege as exc:
            raise StorePermissionError(
                f"User {self.user!r} may not create the schema {self.schema!r} in database "
                f"{self.dbname!r} ({first_line(str(exc))}). Either grant it once "
                f"(GRANT CREATE ON DATABASE {self.dbname} TO {self.user}) or have an admin "
                f"create the schema for it (CREATE SCHEMA {self.schema} AUTHORIZATION "
                f"{self.user}), or pick an existing schema with the schema option."
            ) from exc
        except psycopg.Error as exc:
            raise self._wrap(exc) from exc
        finally:
            conn.close()

    def _version(self, conn: psycopg.Connection[Any]) -> int | None:
        meta = f'"{self.schema}".meta'
        exists = conn.execute(queries.SQL_META_EXISTS, (meta,)).fetchone()
        if not exists or not exists[0]:
            return None
        row = conn.execute(self.q(queries.SQL_GET_VERSION)).fetchone()
        if row is None:
            return None
        version = int(row[0])
        if version > queries.SCHEMA_VERSION:
            raise SchemaVersionError(
                f"Schema {self.schema!r} of {self.display} was written by a newer "
                f"gorelay-kombu (schema version {version}, this release reads up to "
                f"{queries.SCHEMA_VERSION}). Upgrade gorelay-kombu (pip install -U "
                "\"gorelay-kombu[postgres]\") or use another schema (option schema)."
            )
        return version

    # -- queues ---------------------------------------------------------------
    def declare_queue(
        self, queue: str, message_ttl: float | None = None, expires: float | None = None
    ) -> None:
        params = {"name": queue, "now": time.time(), "ttl": message_ttl, "expires": expires}
        self._exec(queries.SQL_DECLARE_QUEUE, params)

    def touch_queues(self, queues: Sequence[str]) -> None:
        if queues:
            self._exec(queries.SQL_TOUCH_QUEUES, (time.time(), list(queues)))

    def expire_idle_queues(self) -> list[str]:
        return [r[0] for r in self._fetch(queries.SQL_EXPIRE_IDLE_QUEUES, (time.time(),))]

    def maintain(self) -> None:
        """Expire idle queues; about once a minute also drop expired key/values."""
        self.expire_idle_queues()
        now = time.time()
        if now - self._kv_swept >= KV_SWEEP_SECONDS:
            self._kv_swept = now
            self.kv_purge_expired()

    def has_queue(self, queue: str) -> bool:
        return bool(self._fetch(queries.SQL_HAS_QUEUE, (queue,)))

    def delete_queue(self, queue: str) -> None:
        self._exec(queries.SQL_DELETE_QUEUE, {"q": queue})

    def put_many(self, messages: Sequence[NewMessage]) -> list[int]:
        """One INSERT and its NOTIFY in one transaction (one round trip)."""
        if not messages:
            return []
        now = time.time()
        if len(messages) == 1:
            m = messages[0]
            one = {"queue": m.queue, "lane": m.lane,
                   "state": SCHEDULED if m.visible_at > now else READY,
                   "visible": max(m.visible_at, now), "payload": bytes(m.payload),
                   "expires": m.expires_at, "now": now, "channel": self.channel}
            return [int(self._fetch(queries.SQL_PUT_ONE, one, idempotent=False)[0][0])]
        params = put_params(messages, now, self.channel)
        # Not retried: a commit whose answer was lost would store the batch twice.
        rows = self._fetch(queries.SQL_PUT, params, idempotent=False)
        # Ids come from one sequence in insertion (ORDER BY ord) order.
        return sorted(int(r[0]) for r in rows)

    def put_routed(self, exchange: str, routing_key: str, message: NewMessage) -> int:
        """Route by the current bindings, insert and NOTIFY: one statement, one round trip."""
        now = time.time()
        params = {"exchange": exchange, "routing_key": routing_key, "lane": message.lane,
                  "state": SCHEDULED if message.visible_at > now else READY,
                  "visible": max(message.visible_at, now), "payload": bytes(message.payload),
                  "expires": message.expires_at, "now": now, "channel": self.channel}
        # Not retried, as put_many: a commit whose answer was lost would store it twice.
        rows = self._fetch(queries.SQL_PUT_ROUTED, params, idempotent=False)
        return int(rows[0][0]) if rows else 0

    def reserve(
        self, queues: Sequence[str], limit: int, owner: str, lease: float
    ) -> list[Reserved]:
        if limit <= 0 or not queues:
            return []
        now = time.time()
        params: dict[str, Any] = {"until": now + lease, "owner": owner, "limit": limit}
        if len(queues) == 1:
            lease_sql, params["queue"] = self.q(queries.SQL_LEASE_HEAD), queues[0]
        else:
            lease_sql = self.q(queries.SQL_LEASE_HEADS)
            params["queues"] = list(dict.fromkeys(queues))
        restore, drop = self.q(queries.SQL_RESTORE_DUE), self.q(queries.SQL_DROP_EXPIRED)

        def run(conn: psycopg.Connection[Any]) -> list[Any]:
            # Three statements, one round trip; each sees the ones before it.
            with conn.pipeline():
                conn.execute(restore, (now,))
                conn.execute(drop, (now,))
                cur = conn.execute(lease_sql, params)
            return cur.fetchall()

        # Retried on a dropped connection: if the lost attempt did commit, its
        # leases just expire (at least once), which beats failing the consumer.
        rows = self._run(run, idempotent=True)
        result = [Reserved(int(r[0]), r[1], int(r[2]), bytes(r[3]), int(r[4])) for r in rows]
        result.sort(key=lambda m: (m.lane, m.id))
        return result

    def ack(self, ids: Iterable[int]) -> None:
        ids = list(ids)
        if ids:
            self._exec(queries.SQL_ACK, (ids,))

    def release(self, ids: Iterable[int], owner: str) -> None:
        ids = list(ids)
        if ids:
            self._exec(queries.SQL_RELEASE, {"now": time.time(), "ids": ids, "owner": owner,
                                     "channel": self.channel})

    def renew(self, owner: str, lease: float, ids: Iterable[int]) -> int:
        ids = list(ids)
        if not ids:
            return 0
        return self._exec(queries.SQL_RENEW, (time.time() + lease, ids, owner))

    def dead_letter(self, message_id: int, reason: str) -> None:
        self._exec(queries.SQL_DEAD, (reason, message_id))

    def dead_letters(self, queue: str) -> list[tuple[int, str, bytes]]:
        rows = self._fetch(queries.SQL_DEAD_LETTERS, (queue,))
        return [(int(r[0]), r[1] or "", bytes(r[2])) for r in rows]

    def size(self, queue: str) -> int:
        return int(self._fetch(queries.SQL_SIZE, (queue,))[0][0])

    def purge(self, queue: str) -> int:
        return self._exec(queries.SQL_PURGE, (queue,), idempotent=False)  # an exact count

    def next_due(self) -> float | None:
        value = self._fetch(queries.SQL_NEXT_DUE)[0][0]
        return None if value is None else float(value)

    def waiter(self) -> Waiter:
        from .postgres_listen import NotifyWaiter

        return NotifyWaiter(self._listen, self.channel)

    # -- bindings -------------------------------------------------------------
    def declare_exchange(self, exchange: str, type: str) -> None:
        self._exec(queries.SQL_DECLARE_EXCHANGE, (exchange, type))

    def exchange_type(self, exchange: str) -> str | None:
        rows = self._fetch(queries.SQL_EXCHANGE_TYPE, (exchange,))
        return rows[0][0] if rows else None

    def bind(self, exchange: str, routing_key: str, pattern: str | None, queue: str) -> None:
        self._exec(queries.SQL_BIND, (exchange, routing_key, pattern, queue))

    def unbind(self, exchange: str, routing_key: str, queue: str) -> None:
        self._exec(queries.SQL_UNBIND, (exchange, routing_key, queue))

    def bindings(self, exchange: str) -> list[tuple[str, str | None, str]]:
        return [(r[0], r[1], r[2]) for r in self._fetch(queries.SQL_BINDINGS, (exchange,))]

    # -- key/value ------------------------------------------------------------
    def kv_get(self, key: str) -> bytes | None:
        rows = self._fetch(queries.SQL_KV_GET, (key, time.time()))
        return bytes(rows[0][0]) if rows else None

    def kv_mget(self, keys: Sequence[str]) -> list[bytes | None]:
        if not keys:
            return []
        found = {r[0]: bytes(r[1])
                 for r in self._fetch(queries.SQL_KV_MGET, (list(keys), time.time()))}
        return [found.get(k) for k in keys]

    def kv_set(
        self, key: str, value: bytes, ttl: float | None = None, notify: bool = False
    ) -> None:
        expires_at = None if ttl is None else time.time() + ttl
        if notify:
            self._fetch(queries.SQL_KV_SET_NOTIFY,
                        (key, bytes(value), expires_at, self.kv_channel))
        else:
            self._exec(queries.SQL_KV_SET, (key, bytes(value), expires_at))

    def kv_delete(self, key: str) -> None:
        self._exec(queries.SQL_KV_DELETE, (key,))

    def kv_incr(self, key: str, amount: int = 1, ttl: float | None = None) -> int:
        now = time.time()
        params = {"key": key, "amount": int(amount), "now": now, "ttl_given": ttl is not None,
                  "expires": None if ttl is None else now + ttl}
        try:  # not retried: an increment whose answer was lost would count twice
            return int(self._fetch(queries.SQL_KV_INCR, params, idempotent=False)[0][0])
        except StoreError as exc:
            if isinstance(exc.__cause__, (pg_errors.InvalidTextRepresentation,
                                          pg_errors.CharacterNotInRepertoire)):
                raise StoreError(
                    f"kv_incr({key!r}): the value there is not an integer. Delete the key "
                    "or use another key for the counter."
                ) from exc
            raise

    def kv_add(self, key: str, value: bytes, ttl: float | None = None) -> bytes | None:
        while True:
            now = time.time()
            params = {"key": key, "value": bytes(value), "now": now,
                      "expires": None if ttl is None else now + ttl}
            stored, existing = self._fetch(queries.SQL_KV_ADD, params, idempotent=False)[0]
            if stored:
                return None
            if existing is not None:
                return bytes(existing)
            # A concurrent add committed after this statement's snapshot: look again.

    def kv_expire(self, key: str, ttl: float | None) -> None:
        now = time.time()
        self._exec(queries.SQL_KV_EXPIRE, (None if ttl is None else now + ttl, key, now))

    def kv_purge_expired(self) -> int:
        return self._exec(queries.SQL_KV_DROP_EXPIRED, (time.time(),), idempotent=False)

    def kv_waiter(self) -> Waiter:
        from .postgres_listen import NotifyWaiter

        return NotifyWaiter(self._listen, self.kv_channel)

    # -- inspection -------------------------------------------------------------
    def queue_stats(self) -> list[QueueStats]:
        rows = self._fetch(queries.SQL_QUEUE_STATS, {"now": time.time()})
        return [QueueStats.from_row(r) for r in rows]

    def history(self) -> History:
        """The task history, in this store's schema (tables created on first use)."""
        with self._history_lock:
            if self._history is None:
                from ..history.postgres import PostgresHistory

                self._history = PostgresHistory(self)
            return self._history

    # -- lifecycle ------------------------------------------------------------
    def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        if os.getpid() != self._pid:
            _ORPHANS.append(pool)  # the parent's: leave its connections alone
            return
        with contextlib.suppress(Exception):
            pool.close(timeout=1.0)


def _check_connection(conn: psycopg.Connection[Any]) -> None:
    """Pool check at checkout, without a round trip.

    An idle connection has nothing to read; when its socket is readable, the
    server has sent something on its own (usually the FATAL of a restart or
    ``pg_terminate_backend``) and the pool replaces it.
    """
    pgconn = conn.pgconn
    if pgconn.status != pq.ConnStatus.OK:
        raise psycopg.OperationalError("connection is closed")
    readable, _, _ = select.select([pgconn.socket], [], [], 0)
    if readable:
        conn.close()  # closed, so the pool discards it instead of handing it out again
        raise psycopg.OperationalError("the server sent data on an idle connection")


def put_params(messages: Sequence[NewMessage], now: float, channel: str) -> dict[str, Any]:
    """The parameters of ``SQL_PUT`` for ``messages`` (``channel``: the NOTIFY channel)."""
    return {
        "queues": [m.queue for m in messages],
        "lanes": [m.lane for m in messages],
        "states": [SCHEDULED if m.visible_at > now else READY for m in messages],
        "visible": [max(m.visible_at, now) for m in messages],
        "payloads": [bytes(m.payload) for m in messages],
        "expires": [m.expires_at for m in messages],
        "now": now,
        "channel": channel,
    }
