"""SQLite store: the zero-infrastructure default.

Features: one file shared by any number of processes on one machine; WAL
journal, so readers never block the writer; leases with renewal; ETA
messages stored invisible; three priority lanes; shared bindings; key/value.
Every write is one short ``BEGIN IMMEDIATE`` transaction, retried by SQLite
for ``busy_timeout`` seconds before :class:`StoreUnavailable` is raised.
Consumers are woken by a :mod:`~gorelay_kombu.doorbell` right after a commit;
``kv_set(..., notify=True)`` rings a second doorbell (``<file>-gorelay-kv``), so
stored results wake result waiters and never queue consumers.  Counters and
add-if-absent run inside one write transaction.  The task history lives in
the same file (``gorelay_history_*`` tables, created on first use).

URL: ``gorelay://`` (``./relay.db``), ``gorelay+sqlite:///relative.db``,
``gorelay+sqlite:////absolute.db``.

Options (``transport_options`` or the URL's query string):

* ``synchronous``: ``NORMAL`` (default: a committed publish survives a crash
  of the process; a power loss may lose the last commits) or ``FULL``
  (survives power loss too, slower).
* ``busy_timeout``: seconds to wait for another process's write lock
  (default 30).

Schema: versioned in ``gorelay_meta``; creation is idempotent, and a file
written by a newer release is refused with :class:`SchemaVersionError`.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from ..doorbell import Doorbell, PipeWaiter, doorbell_dir
from ..errors import (
    InvalidOption,
    SchemaVersionError,
    StoreError,
    StoreLocationError,
)
from ..options import number_option
from . import sqlite_sql as q
from .base import READY, SCHEDULED, NewMessage, QueueStats, Reserved, Store, Waiter
from .kv_values import incremented
from .sqlite_checkpoint import Checkpointer
from .sqlite_errors import check_location, translate

if TYPE_CHECKING:
    from ..history import History

SYNCHRONOUS_MODES = ("NORMAL", "FULL", "EXTRA")
AUTOCHECKPOINT_PAGES = 20_000
#: seconds between expired key/value clean-ups (in maintain)
KV_SWEEP_SECONDS = 60.0


def _options(options: dict[str, Any]) -> tuple[str, float]:
    sync = str(options.get("synchronous", "NORMAL")).upper()
    if sync not in SYNCHRONOUS_MODES:
        raise InvalidOption(
            f"synchronous={options['synchronous']!r} is not supported; use one of "
            f"{', '.join(SYNCHRONOUS_MODES)} (NORMAL survives a process crash, FULL also "
            "survives power loss)."
        )
    return sync, number_option(options, "busy_timeout", 30.0, 0)


class SQLiteStore(Store):
    """The SQLite store; see the module docstring."""

    kind = "sqlite"
    wakes_on_publish = True
    options = frozenset({"synchronous", "busy_timeout"})

    def __init__(self, path: str, options: dict[str, Any] | None = None) -> None:
        self.synchronous, self.busy_timeout = _options(options or {})
        self.path = os.path.abspath(path)
        self._check_location()
        self._local = threading.local()
        self._lock = threading.Lock()
        # One writer per file and process at a time, whichever store it uses (a
        # worker's broker, result backend and history are separate stores):
        # threads queue on this lock instead of sleeping in SQLite's busy
        # handler, and publishers waiting on it share the next commit (put_many).
        self._write_lock = _write_lock_for(self.path)
        self._pending_puts: list[_PutRequest] = []
        self._checkpointed = False
        self._stamp_path = self.path + "-gorelay-bindings"
        self._bindings_cache: dict[str, tuple[int, list[tuple[str, str | None, str]]]] = {}
        #: every thread's connection, until that thread ends or close() (see _Held)
        self._conns: weakref.WeakSet[_Held] = weakref.WeakSet()
        self._forks = _forks  # a forked child sees a larger _forks (see _conn)
        self._doorbell_dir = doorbell_dir(self.path)
        self._doorbell = Doorbell(self._doorbell_dir)
        # A second doorbell for kv_set(notify=True): results never wake queue consumers.
        self._kv_doorbell_dir = doorbell_dir(self.path + "-gorelay-kv")
        self._kv_doorbell = Doorbell(self._kv_doorbell_dir)
        self._kv_swept = 0.0
        self._history: History | None = None
        self._history_lock = threading.Lock()
        self._setup(self._conn())
        if not self._bindings_stamp():
            self._bindings_changed()

    # -- connections ----------------------------------------------------------
    def _check_location(self) -> None:
        check_location(self.path)

    def _conn(self) -> sqlite3.Connection:
        if self._forks != _forks:
            # After fork: never use the parent's connections (SQLite forbids it).
            self._forks = _forks
            self._local = threading.local()
            self._conns = weakref.WeakSet()
            self._lock = threading.Lock()
            self._write_lock = _write_lock_for(self.path)
            self._pending_puts = []
            self._checkpointed = False
        held: _Held | None = getattr(self._local, "held", None)
        if held is None:
            held = self._local.held = _Held(self._connect())
            with self._lock:
                self._conns.add(held)
        return held.conn

    def _connect(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(
                self.path, timeout=self.busy_timeout, isolation_level=None,
                check_same_thread=False,
            )
            conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            conn.execute(f"PRAGMA synchronous = {self.synchronous}")
            # Checkpoints run in a background thread (Checkpointer); the high
            # automatic threshold is only a safety net, so a publish or an ack
            # does not pay for a checkpoint and its fsync.
            conn.execute(f"PRAGMA wal_autocheckpoint = {AUTOCHECKPOINT_PAGES}")
        except sqlite3.DatabaseError as exc:
            raise self._wrap(exc) from exc
        if str(mode).lower() != "wal":
            raise StoreLocationError(
                f"SQLite could not switch {self.path!r} to WAL mode (got {mode!r}); "
                "the file system may not support shared memory (network file systems "
                "do not). Put the store on a local disk."
            )
        return conn

    def _setup(self, conn: sqlite3.Connection) -> None:
        if self._schema_is_current(conn):
            return  # the usual case: no write lock, so opening never waits for a writer
        with self._write(conn):
            try:
                row = conn.execute(q.SQL_GET_VERSION).fetchone()
            except sqlite3.OperationalError:
                row = None  # new file: no meta table yet
            if row is not None and int(row[0]) > q.SCHEMA_VERSION:
                raise SchemaVersionError(
                    f"{self.path!r} was written by a newer gorelay-kombu (schema version "
                    f"{row[0]}, this release reads up to {q.SCHEMA_VERSION}). Upgrade "
                    "gorelay-kombu (pip install -U gorelay-kombu) or use another file."
                )
            for statement in q._statements():  # executescript would COMMIT early
                conn.execute(statement)
            if row is None:
                conn.execute(q.SQL_SET_VERSION, (str(q.SCHEMA_VERSION),))

    def _schema_is_current(self, conn: sqlite3.Connection) -> bool:
        """True when this release's version and every table and index are there."""
        try:
            row = conn.execute(q.SQL_GET_VERSION).fetchone()
            present = {r[0] for r in conn.execute(q.SQL_SCHEMA_OBJECTS)}
        except sqlite3.OperationalError:
            return False  # new file (no meta table) or busy: the write path decides
        except sqlite3.DatabaseError as exc:
            raise self._wrap(exc) from exc
        return row is not None and int(row[0]) == q.SCHEMA_VERSION and q.SCHEMA_OBJECTS <= present

    def _wrap(self, exc: sqlite3.Error) -> StoreError:
        return translate(exc, self.path, self.busy_timeout)

    class _Txn:
        __slots__ = ("store", "conn")

        def __init__(self, store: SQLiteStore, conn: sqlite3.Connection) -> None:
            self.store, self.conn = store, conn

        def __enter__(self) -> sqlite3.Connection:
            Checkpointer.watch(self.store)
            self.store._write_lock.acquire()
            try:
                self.conn.execute("BEGIN IMMEDIATE")
            except BaseException as exc:
                self.store._write_lock.release()
                if isinstance(exc, sqlite3.Error):
                    raise self.store._wrap(exc) from exc
                raise
            return self.conn

        def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
            try:
                if exc_type is None:
                    try:
                        self.conn.execute("COMMIT")
                        return
                    except sqlite3.Error as err:
                        self._rollback()
                        raise self.store._wrap(err) from err
                self._rollback()
                if isinstance(exc, sqlite3.Error):
                    raise self.store._wrap(exc) from exc
            finally:
                self.store._write_lock.release()

        def _rollback(self) -> None:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")

    def _write(self, conn: sqlite3.Connection | None = None) -> SQLiteStore._Txn:
        return self._Txn(self, conn or self._conn())

    def _read(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[Any]:
        try:
            return self._conn().execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise self._wrap(exc) from exc

    # -- queues ---------------------------------------------------------------
    def declare_queue(
        self, queue: str, message_ttl: float | None = None, expires: float | None = None
    ) -> None:
        now = time.time()
        if self._read(q.SQL_HAS_QUEUE, (queue,)):
            if expires is not None:
                self.touch_queues([queue])
            return
        with self._write() as conn:
            conn.execute(q.SQL_DECLARE_QUEUE, (queue, now, message_ttl, expires, now))

    def touch_queues(self, queues: Sequence[str]) -> None:
        now = time.time()
        with self._write() as conn:
            conn.executemany(q.SQL_TOUCH_QUEUE, [(now, name) for name in queues])

    def expire_idle_queues(self) -> list[str]:
        idle = [r[0] for r in self._read(q.SQL_IDLE_QUEUES, (time.time(),))]
        if idle:
            with self._write() as conn:
                for queue in idle:
                    self._delete_queue(conn, queue)
            self._bindings_changed()
        return idle

    def maintain(self) -> None:
        """Expire idle queues; about once a minute also drop expired key/values."""
        self.expire_idle_queues()
        now = time.time()
        if now - self._kv_swept >= KV_SWEEP_SECONDS:
            self._kv_swept = now
            self.kv_purge_expired()

    def has_queue(self, queue: str) -> bool:
        return bool(self._read(q.SQL_HAS_QUEUE, (queue,)))

    def delete_queue(self, queue: str) -> None:
        with self._write() as conn:
            self._delete_queue(conn, queue)
        self._bindings_changed()

    @staticmethod
    def _delete_queue(conn: sqlite3.Connection, queue: str) -> None:
        conn.execute(q.SQL_DELETE_QUEUE, (queue,))
        conn.execute(q.SQL_DELETE_QUEUE_MESSAGES, (queue,))
        conn.execute(q.SQL_DELETE_QUEUE_BINDINGS, (queue,))

    def put_many(self, messages: Sequence[NewMessage]) -> list[int]:
        """Group commit: publishers that arrive while another thread of this
        process commits are written together in the next transaction.  Each
        call still returns only after the commit that holds its messages."""
        Checkpointer.watch(self)
        if len(messages) == 1 and self._write_lock.acquire(blocking=False):
            try:  # nobody else is writing here: one autocommit INSERT is one commit
                try:
                    cur = self._put_cursor().execute(
                        q.SQL_PUT, _put_params(messages[0], time.time()))
                except sqlite3.Error as exc:
                    raise self._wrap(exc) from exc
                ids = [int(cur.lastrowid or 0)]
            finally:
                self._write_lock.release()
            self._doorbell.ring()
            return ids
        return self._group_put(_PutRequest(messages)).ids

    def put_routed(self, exchange: str, routing_key: str, message: NewMessage) -> int:
        """Route by the committed bindings and insert, in one statement and one
        commit (group commit as :meth:`put_many` when threads contend)."""
        if not self._checkpointed:
            Checkpointer.watch(self)
        if self._write_lock.acquire(blocking=False):
            try:  # the usual case: one autocommit INSERT ... SELECT is one commit
                now = time.time()
                visible_at, expires_at = message.visible_at, message.expires_at
                params: tuple[Any, ...] = (
                    exchange, routing_key, message.lane,
                    READY if visible_at <= now else SCHEDULED, max(visible_at, now), now,
                    message.payload)  # as _routed_params
                if expires_at is None:
                    sql = q.SQL_PUT_ROUTED_NO_EXPIRY
                else:
                    sql, params = q.SQL_PUT_ROUTED, (*params, expires_at)
                try:
                    count: int = self._put_cursor().execute(sql, params).rowcount
                except sqlite3.Error as exc:
                    raise self._wrap(exc) from exc
            finally:
                self._write_lock.release()
            if count:
                self._doorbell.ring()
            return count
        return self._group_put(_PutRequest((), (exchange, routing_key, message))).routed_count

    def _group_put(self, request: _PutRequest) -> _PutRequest:
        with self._lock:
            self._pending_puts.append(request)
        with self._write_lock:
            if not request.finished:
                with self._lock:
                    batch, self._pending_puts = self._pending_puts, []
                self._commit_puts(batch)
        if request.error is not None:
            raise request.error
        return request

    def _put_cursor(self) -> sqlite3.Cursor:
        """This thread's cursor for inserts (one cursor per statement is slower)."""
        cursor: sqlite3.Cursor | None = getattr(self._local, "put_cursor", None)
        if cursor is None or self._forks != _forks:  # first use in this thread, or forked
            conn = self._conn()  # (after a fork: resets self._local)
            cursor = self._local.put_cursor = conn.cursor()
        return cursor

    def _commit_puts(self, batch: list[_PutRequest]) -> None:
        now = time.time()
        stored = False
        try:
            with self._write() as conn:
                for request in batch:
                    for m in request.messages:
                        cur = conn.execute(q.SQL_PUT, _put_params(m, now))
                        request.ids.append(int(cur.lastrowid or 0))
                    if request.routed is not None:
                        request.routed_count = conn.execute(
                            q.SQL_PUT_ROUTED, _routed_params(*request.routed, now)).rowcount
                    stored = stored or bool(request.ids or request.routed_count)
        except BaseException as exc:
            for request in batch:
                request.ids, request.routed_count, request.error = [], 0, exc
        for request in batch:
            request.finished = True
        if stored:
            self._doorbell.ring()

    def reserve(
        self, queues: Sequence[str], limit: int, owner: str, lease: float
    ) -> list[Reserved]:
        if limit <= 0 or not queues:
            return []
        now = time.time()
        # Read first (WAL readers take no lock): an idle poll never writes.
        due, expired, ready = self._read(q._probe_sql(len(queues)), (now, now, *queues))[0]
        if not due and not ready:
            if expired:
                with self._write() as conn:
                    conn.execute(q.SQL_DROP_EXPIRED, (now,))
            return []
        until = now + lease
        with self._write() as conn:
            if due:
                conn.execute(q.SQL_RESTORE_DUE, (now,))
            if expired:
                conn.execute(q.SQL_DROP_EXPIRED, (now,))
            if len(queues) == 1:
                rows = conn.execute(q.SQL_LEASE_HEAD, (until, owner, queues[0], limit)).fetchall()
            else:
                heads = []
                for rank, queue in enumerate(queues):
                    for mid, lane in conn.execute(q.SQL_READY_HEAD, (queue, limit)):
                        heads.append((lane, rank, mid))
                heads.sort()
                rows = []
                for _lane, _rank, mid in heads[:limit]:
                    rows.extend(conn.execute(q.SQL_LEASE_ONE, (until, owner, mid)).fetchall())
        result = [Reserved(r[0], r[1], r[2], r[3], r[4]) for r in rows]
        result.sort(key=lambda m: (m.lane, m.id))
        return result

    def ack(self, ids: Iterable[int]) -> None:
        params = [(i,) for i in ids]
        if params:
            with self._write() as conn:
                conn.executemany(q.SQL_ACK, params)

    def release(self, ids: Iterable[int], owner: str) -> None:
        now = time.time()
        params = [(now, i, owner) for i in ids]
        if params:
            with self._write() as conn:
                conn.executemany(q.SQL_RELEASE, params)
            self._doorbell.ring()

    def renew(self, owner: str, lease: float, ids: Iterable[int]) -> int:
        until = time.time() + lease
        params = [(until, i, owner) for i in ids]
        if not params:
            return 0
        with self._write() as conn:
            return conn.executemany(q.SQL_RENEW, params).rowcount

    def dead_letter(self, message_id: int, reason: str) -> None:
        with self._write() as conn:
            conn.execute(q.SQL_DEAD, (reason, message_id))

    def dead_letters(self, queue: str) -> list[tuple[int, str, bytes]]:
        return [(r[0], r[1], r[2]) for r in self._read(q.SQL_DEAD_LETTERS, (queue,))]

    def size(self, queue: str) -> int:
        return int(self._read(q.SQL_SIZE, (queue,))[0][0])

    def purge(self, queue: str) -> int:
        with self._write() as conn:
            return conn.execute(q.SQL_PURGE, (queue,)).rowcount

    def next_due(self) -> float | None:
        value = self._read(q.SQL_NEXT_DUE)[0][0]
        return None if value is None else float(value)

    def waiter(self) -> Waiter:
        return PipeWaiter(self._doorbell_dir)

    # -- bindings -------------------------------------------------------------
    def declare_exchange(self, exchange: str, type: str) -> None:
        if self.exchange_type(exchange) is None:
            with self._write() as conn:
                conn.execute(q.SQL_DECLARE_EXCHANGE, (exchange, type))

    def exchange_type(self, exchange: str) -> str | None:
        rows = self._read(q.SQL_EXCHANGE_TYPE, (exchange,))
        return rows[0][0] if rows else None

    def bind(self, exchange: str, routing_key: str, pattern: str | None, queue: str) -> None:
        with self._write() as conn:
            changed = conn.execute(q.SQL_BIND, (exchange, routing_key, pattern, queue)).rowcount
        if changed:
            self._bindings_changed()

    def unbind(self, exchange: str, routing_key: str, queue: str) -> None:
        with self._write() as conn:
            changed = conn.execute(q.SQL_UNBIND, (exchange, routing_key, queue)).rowcount
        if changed:
            self._bindings_changed()

    def bindings(self, exchange: str) -> list[tuple[str, str | None, str]]:
        """Bindings are read on every topic and fanout publish (direct routing
        reads them inside its INSERT, see put_routed), so they are cached per process.

        The cache is keyed by the modification time of a stamp file beside the
        database, which every process changes right after it commits a change
        of bindings: one ``stat`` instead of a query, never stale once the
        change has returned.
        """
        stamp = self._bindings_stamp()
        cached = self._bindings_cache.get(exchange)
        if cached is not None and cached[0] == stamp and stamp:
            return cached[1]
        table = [(r[0], r[1], r[2]) for r in self._read(q.SQL_BINDINGS, (exchange,))]
        self._bindings_cache[exchange] = (stamp, table)
        return table

    def _bindings_stamp(self) -> int:
        try:
            return os.stat(self._stamp_path).st_mtime_ns
        except OSError:
            return 0  # no stamp: never cache

    def _bindings_changed(self) -> None:
        try:
            before = self._bindings_stamp()
            with open(self._stamp_path, "ab"):
                pass
            now = max(time.time_ns(), before + 1)  # always different from before
            os.utime(self._stamp_path, ns=(now, now))
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(self._stamp_path)  # cannot stamp: make every reader query

    # -- key/value ------------------------------------------------------------
    def kv_get(self, key: str) -> bytes | None:
        return self._live(self._read(q.SQL_KV_GET, (key,)), time.time())

    @staticmethod
    def _live(rows: list[Any], now: float) -> bytes | None:
        """The value of a ``(value, expires_at)`` row unless absent or expired."""
        if not rows:
            return None
        value, expires_at = rows[0]
        if expires_at is not None and expires_at <= now:
            return None
        return bytes(value)

    def kv_mget(self, keys: Sequence[str]) -> list[bytes | None]:
        if not keys:
            return []
        now = time.time()
        found = {r[0]: r[1:] for r in self._read(q.SQL_KV_MGET, (json.dumps(list(keys)),))}
        return [self._live([found[k]] if k in found else [], now) for k in keys]

    def kv_set(
        self, key: str, value: bytes, ttl: float | None = None, notify: bool = False
    ) -> None:
        expires_at = None if ttl is None else time.time() + ttl
        with self._write() as conn:
            conn.execute(q.SQL_KV_SET, (key, value, expires_at))
        if notify:
            self._kv_doorbell.ring()

    def kv_delete(self, key: str) -> None:
        with self._write() as conn:
            conn.execute(q.SQL_KV_DELETE, (key,))

    def kv_incr(self, key: str, amount: int = 1, ttl: float | None = None) -> int:
        # Read and write in one BEGIN IMMEDIATE: no other process writes in between.
        with self._write() as conn:
            now = time.time()
            rows = conn.execute(q.SQL_KV_GET, (key,)).fetchall()
            current = self._live(rows, now)
            value = incremented(current, amount, key)
            expires_at: float | None
            if ttl is not None:
                expires_at = now + ttl
            else:
                expires_at = rows[0][1] if current is not None else None
            conn.execute(q.SQL_KV_SET, (key, str(value).encode(), expires_at))
        return value

    def kv_add(self, key: str, value: bytes, ttl: float | None = None) -> bytes | None:
        with self._write() as conn:
            now = time.time()
            current = self._live(conn.execute(q.SQL_KV_GET, (key,)).fetchall(), now)
            if current is None:
                conn.execute(q.SQL_KV_SET, (key, value, None if ttl is None else now + ttl))
        return current

    def kv_expire(self, key: str, ttl: float | None) -> None:
        now = time.time()
        with self._write() as conn:
            conn.execute(q.SQL_KV_EXPIRE, (None if ttl is None else now + ttl, key, now))

    def kv_purge_expired(self) -> int:
        with self._write() as conn:
            return conn.execute(q.SQL_KV_PURGE_EXPIRED, (time.time(),)).rowcount

    def kv_waiter(self) -> Waiter:
        return PipeWaiter(self._kv_doorbell_dir)

    # -- inspection -------------------------------------------------------------
    def queue_stats(self) -> list[QueueStats]:
        rows = self._read(q.SQL_QUEUE_STATS, {"now": time.time()})
        return [QueueStats.from_row(r) for r in rows]

    def history(self) -> History:
        """The task history, in this file (tables created on first use)."""
        with self._history_lock:
            if self._history is None:
                from ..history.sqlite import store_history

                self._history = store_history(self)
            return self._history

    # -- lifecycle ------------------------------------------------------------
    def close(self) -> None:
        Checkpointer.forget(self)
        with self._lock:
            held, self._conns = list(self._conns), weakref.WeakSet()
        self._local = threading.local()
        if self._forks != _forks:
            return
        for h in held:
            _close_quietly(h.conn)
        self._doorbell.close()
        self._kv_doorbell.close()


#: fork depth (a forked child has its parent's + 1): cheaper to compare than os.getpid()
_forks = 0
#: the write lock of each database file in this process (see SQLiteStore.__init__)
_write_locks: dict[str, threading.RLock] = {}
_write_locks_guard = threading.Lock()


def _write_lock_for(path: str) -> threading.RLock:
    with _write_locks_guard:
        lock = _write_locks.get(path)
        if lock is None:
            lock = _write_locks[path] = threading.RLock()
        return lock


def _after_fork_in_child() -> None:
    """Count the fork; a lock another thread held at it stays held here: start afresh."""
    global _forks, _write_locks_guard
    _forks += 1
    _write_locks_guard = threading.Lock()
    _write_locks.clear()


os.register_at_fork(after_in_child=_after_fork_in_child)


def _put_params(m: NewMessage, now: float) -> tuple[Any, ...]:
    state = SCHEDULED if m.visible_at > now else READY
    return (m.queue, m.lane, state, max(m.visible_at, now), now, m.payload, m.expires_at)


def _routed_params(
    exchange: str, routing_key: str, m: NewMessage, now: float
) -> tuple[Any, ...]:
    state = SCHEDULED if m.visible_at > now else READY
    return (exchange, routing_key, m.lane, state, max(m.visible_at, now), now, m.payload,
            m.expires_at)


class _PutRequest:
    """One caller's messages (or one routed message) waiting for a group commit."""

    __slots__ = ("messages", "routed", "ids", "routed_count", "error", "finished")

    def __init__(
        self,
        messages: Sequence[NewMessage],
        routed: tuple[str, str, NewMessage] | None = None,
    ) -> None:
        self.messages = messages
        self.routed = routed
        self.ids: list[int] = []
        self.routed_count = 0
        self.error: BaseException | None = None
        self.finished = False


class _Held:
    """One thread's connection, closed when that thread ends.

    The thread-local slot is the only strong reference, so a thread-per-request
    web app that enqueues does not keep a file descriptor per finished thread.
    """

    __slots__ = ("conn", "__weakref__")

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        # Not at interpreter exit: other threads (history, checkpoints) may still be
        # using their connections then, and closing one under them can crash sqlite3;
        # the process's exit closes the descriptors anyway.
        weakref.finalize(self, _close_quietly, conn).atexit = False


def _close_quietly(conn: sqlite3.Connection) -> None:
    try:
        conn.close()
    except sqlite3.Error:
        pass
