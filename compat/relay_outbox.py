"""Transactional enqueue (the outbox pattern): the task exists iff the caller's transaction commits.

``relay.enqueue(topic, payload, connection=conn)`` with a SQLAlchemy
``Connection`` or ``Session`` on the store's own database (the SQLite file,
or the PostgreSQL database and schema) builds the task message exactly as
Celery does (``Task.apply_async`` through a kombu ``Producer``) and encodes
it exactly as the gorelay channel does; only the last step differs: instead
of the store's own commit, the message row is inserted on the caller's
connection with the store's own SQL (``sqlite_sql.SQL_PUT``,
``postgres_sql.SQL_PUT``).  Rolled back, nothing was ever queued; committed,
workers are woken:

* PostgreSQL: ``SQL_PUT`` holds its ``pg_notify``, which PostgreSQL delivers
  at commit (never for a rollback).
* SQLite: the doorbell rings from SQLAlchemy's ``commit`` event of that
  connection.  SQLAlchemy fires it just *before* the DBAPI commit, so the
  hook commits the DBAPI connection itself, then rings (SQLAlchemy's own
  commit that follows finds nothing left to commit).  Should that early
  commit fail, the hook stays silent and SQLAlchemy's commit reports the
  error as usual.

An ``idempotency_key`` is claimed in the same transaction (the key row is
written on the caller's connection too), so a rolled-back enqueue does not
hold the key.  On SQLite the claim first takes the database's write lock
(a no-op delete), so the read that follows is current: two processes cannot
both see the key absent.

The message is marked with the header ``gorelay_outbox`` so history can
leave out its ``sent`` event (it may never be committed); the task appears in
history when a worker receives it.
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from ..storage import NewMessage
from .relay_errors import NotSameDatabase, OutboxError

if TYPE_CHECKING:
    from celery import Celery, Task

    from ..storage import Store

#: header that marks a message written through the outbox
OUTBOX_HEADER = "gorelay_outbox"
#: a key that is never stored: deleting it takes SQLite's write lock
_LOCK_KEY = "relay:outbox:write-lock"


class Outbox:
    """Writes Celery task messages into callers' SQLAlchemy transactions."""

    def __init__(self, app: Celery, url: str, store: Any) -> None:
        self._app, self._url, self._store_fn = app, url, store
        self._lock = threading.Lock()
        self._channel: Any = None
        self._pid = 0
        self._kombu: Any = None
        #: SQLite connections whose next commit must ring the doorbell
        self._ring_on_commit: weakref.WeakSet[Any] = weakref.WeakSet()
        self._hooked: weakref.WeakSet[Any] = weakref.WeakSet()
        self._doorbell: Any = None

    # -- the gorelay channel (encoding, routing; never its store writes) ----------------
    def channel(self) -> Any:
        with self._lock:
            if self._channel is None or self._pid != os.getpid():
                self._kombu = self._app.connection_for_write()
                self._channel = self._kombu.default_channel
                self._pid = os.getpid()
            return self._channel

    def enqueue(self, connection: Any, task: Task, data: Any, options: dict[str, Any],
                task_id: str, idempotency_key: str | None, window: float) -> str:
        """Send ``task`` with ``data`` in ``connection``'s transaction; return the task id."""
        sa_conn = sa_connection(connection)
        store: Store = self._store_fn()
        sink = self._sink(sa_conn, store)
        sink.check_same_database()
        if idempotency_key is not None:
            existing = sink.add_key(idempotency_key, task_id.encode(), window)
            if existing is not None:
                return existing.decode()
        from kombu import Producer

        producer = Producer(_OutboxChannel(self.channel(), sink), auto_declare=False)
        headers = dict(options.pop("headers", None) or {}, **{OUTBOX_HEADER: True})
        task.apply_async(args=(data,), task_id=task_id, producer=producer, declare=[],
                         retry=False, headers=headers, **options)
        return task_id

    def _sink(self, sa_conn: Any, store: Store) -> _Sink:
        dialect = sa_conn.dialect.name
        if store.kind == "sqlite" and dialect == "sqlite":
            return _SQLiteSink(self, sa_conn, store)
        if store.kind == "postgresql" and dialect == "postgresql":
            return _PostgresSink(sa_conn, store)
        if store.kind not in ("sqlite", "postgresql"):
            raise OutboxError(
                f"Transactional enqueue needs a SQLite or PostgreSQL store; this Relay's "
                f"store is {store.kind} ({self._url}). Enqueue after your commit instead, "
                "or move the Relay to your database (gorelay+postgresql://…)."
            )
        raise NotSameDatabase(
            f"The connection is to a {dialect} database, but this Relay's store is "
            f"{store.kind} ({self._url}). Pass a connection to the store's own database, "
            "or point the Relay at your database."
        )

    # -- SQLite wake-ups after commit ---------------------------------------------------
    def ring_after_commit(self, sa_conn: Any, store: Store) -> None:
        from sqlalchemy import event

        if self._doorbell is None:
            from ..doorbell import Doorbell, doorbell_dir

            self._doorbell = Doorbell(doorbell_dir(store.path))  # type: ignore[attr-defined]
        self._ring_on_commit.add(sa_conn)
        if sa_conn not in self._hooked:
            self._hooked.add(sa_conn)
            event.listen(sa_conn, "commit", self._on_commit)
            event.listen(sa_conn, "rollback", self._on_rollback)

    def _on_commit(self, sa_conn: Any) -> None:
        if sa_conn not in self._ring_on_commit:
            return
        self._ring_on_commit.discard(sa_conn)
        try:
            # Commit now (see the module docstring): ringing before the commit would
            # wake consumers too early to see the new row.
            sa_conn.connection.dbapi_connection.commit()
        except Exception:  # noqa: BLE001 - SQLAlchemy's own commit reports it
            return
        self._doorbell.ring()

    def _on_rollback(self, sa_conn: Any) -> None:
        self._ring_on_commit.discard(sa_conn)


def sa_connection(connection: Any) -> Any:
    """The SQLAlchemy ``Connection`` of a ``Connection`` or ``Session``."""
    try:
        from sqlalchemy.engine import Connection
        from sqlalchemy.orm import Session
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise OutboxError(
            "enqueue(..., connection=...) takes a SQLAlchemy Connection or Session, and "
            'SQLAlchemy is not installed: pip install "sqlalchemy>=2".'
        ) from exc
    if isinstance(connection, Session):
        return connection.connection()  # the session's transaction begins here if not yet
    if isinstance(connection, Connection):
        return connection
    raise OutboxError(
        f"connection must be a SQLAlchemy Connection or Session (e.g. the conn of "
        f"'with engine.begin() as conn:'); got {type(connection).__name__}."
    )


class _OutboxChannel:
    """The gorelay channel, except that ``basic_publish`` writes to a sink."""

    def __init__(self, channel: Any, sink: _Sink) -> None:
        self._channel, self._sink = channel, sink

    def __getattr__(self, name: str) -> Any:
        return getattr(self._channel, name)

    def basic_publish(self, message: dict[str, Any], exchange: str, routing_key: str,
                      **kwargs: Any) -> None:
        channel = self._channel
        channel._inplace_augment_message(message, exchange, routing_key)
        if exchange:
            queues = sorted({q for q in channel._lookup(exchange, routing_key) if q})
        else:
            queues = [routing_key] if routing_key else []
        if not queues:
            raise OutboxError(
                f"No queue is bound to exchange {exchange!r} with routing key "
                f"{routing_key!r}, so the task would be dropped. Start a worker for the "
                "topic's queue once (it declares the queue), or route the topic to a queue."
            )
        encoded: NewMessage = channel._encode("", message)
        self._sink.put([replace(encoded, queue=q) for q in queues])


class _Sink:
    """Where an outbox message row goes: the caller's connection."""

    def __init__(self, sa_conn: Any, store: Any) -> None:
        self.conn, self.store = sa_conn, store

    def check_same_database(self) -> None:
        raise NotImplementedError

    def add_key(self, key: str, value: bytes, ttl: float) -> bytes | None:
        raise NotImplementedError

    def put(self, messages: list[NewMessage]) -> None:
        raise NotImplementedError

    def _exec(self, sql: str, params: Any) -> Any:
        from sqlalchemy.exc import DBAPIError

        try:
            return self.conn.exec_driver_sql(sql, params)
        except DBAPIError as exc:
            if _missing_table(exc):
                raise NotSameDatabase(
                    f"The connection's database has no gorelay tables ({exc.orig}); it is "
                    f"not the Relay's store {self.describe_store()}. Pass a connection to "
                    "the store's own database."
                ) from exc
            raise

    def describe_store(self) -> str:
        return self.store.kind


class _SQLiteSink(_Sink):
    def __init__(self, outbox: Outbox, sa_conn: Any, store: Any) -> None:
        super().__init__(sa_conn, store)
        self.outbox = outbox

    def describe_store(self) -> str:
        return str(self.store.path)

    def check_same_database(self) -> None:
        rows = self.conn.exec_driver_sql("PRAGMA database_list").fetchall()
        main = next((r[2] for r in rows if r[1] == "main"), "") or ""
        mine = os.path.realpath(self.store.path)
        if not main or os.path.realpath(main) != mine:
            raise NotSameDatabase(
                f"The connection is to the SQLite database {main or '(in memory)'!r}, but this "
                f"Relay's store is {mine!r}. Open the engine on the store's file "
                f"(create_engine('sqlite:///{mine}')) so the task is written in your "
                "transaction."
            )

    def add_key(self, key: str, value: bytes, ttl: float) -> bytes | None:
        from ..storage import sqlite_sql
        from ..storage.sqlite import SQLiteStore

        self._exec(sqlite_sql.SQL_KV_DELETE, (_LOCK_KEY,))  # take the write lock first
        now = time.time()
        current = SQLiteStore._live(
            self._exec(sqlite_sql.SQL_KV_GET, (key,)).fetchall(), now)
        if current is None:
            self._exec(sqlite_sql.SQL_KV_SET, (key, value, now + ttl))
        return current

    def put(self, messages: list[NewMessage]) -> None:
        from ..storage import sqlite_sql
        from ..storage.sqlite import _put_params

        now = time.time()
        for m in messages:
            self._exec(sqlite_sql.SQL_PUT, _put_params(m, now))
        self.outbox.ring_after_commit(self.conn, self.store)


class _PostgresSink(_Sink):
    _fingerprints: weakref.WeakKeyDictionary[Any, tuple[Any, ...]] = \
        weakref.WeakKeyDictionary()

    def describe_store(self) -> str:
        return f"{self.store.display} schema {self.store.schema}"

    def check_same_database(self) -> None:
        mine = _store_fingerprint(self.store)
        engine = self.conn.engine
        theirs = self._fingerprints.get(engine)
        if theirs is None or theirs[-1] != self.store.schema:
            row = self._exec(_FINGERPRINT_SQL, {"schema": self.store.schema}).fetchone()
            theirs = self._fingerprints[engine] = (*tuple(row), self.store.schema)
        if tuple(theirs[:-1]) != mine:
            raise NotSameDatabase(
                f"The connection is to PostgreSQL database {theirs[0]!r} (server started "
                f"{theirs[1]}), but this Relay's store is {self.describe_store()} (database "
                f"{mine[0]!r}, server started {mine[1]}"
                + (", and that database has no such schema" if theirs[2] is None else "")
                + "). Pass a connection to the store's database."
            )

    def add_key(self, key: str, value: bytes, ttl: float) -> bytes | None:
        from ..storage import postgres_sql

        sql = self.store.q(postgres_sql.SQL_KV_ADD)
        for _ in range(5):
            now = time.time()
            params = {"key": key, "value": value, "now": now, "expires": now + ttl}
            stored, existing = self._exec(sql, params).fetchone()
            if stored:
                return None
            if existing is not None:
                return bytes(existing)
        raise OutboxError(  # pragma: no cover - needs REPEATABLE READ and a race
            f"The idempotency key {key!r} changed hands repeatedly while this transaction "
            "ran (REPEATABLE READ or SERIALIZABLE isolation?); retry the transaction."
        )

    def put(self, messages: list[NewMessage]) -> None:
        from ..storage import postgres_sql
        from ..storage.postgres import put_params

        # pg_notify on the store's channel: delivered at commit
        params = put_params(messages, time.time(), self.store.channel)
        self._exec(self.store.q(postgres_sql.SQL_PUT), params).fetchall()


_FINGERPRINT_SQL = (
    "SELECT current_database(), pg_postmaster_start_time()::text,"
    " (SELECT oid::text FROM pg_namespace WHERE nspname = %(schema)s)"
)
_store_fingerprints: dict[int, tuple[Any, ...]] = {}


def _store_fingerprint(store: Any) -> tuple[Any, ...]:
    found = _store_fingerprints.get(id(store))
    if found is None or found[-1] is not store:
        conn = store.connect()
        try:
            row = conn.execute(_FINGERPRINT_SQL, {"schema": store.schema}).fetchone()
        finally:
            conn.close()
        found = _store_fingerprints[id(store)] = (*tuple(row), store)
    return tuple(found[:-1])


def _missing_table(exc: Any) -> bool:
    text = str(getattr(exc, "orig", exc)).lower()
    return "no such table" in text or ("relation" in text and "does not exist" in text)


__all__ = ["OUTBOX_HEADER", "Outbox", "sa_connection"]
