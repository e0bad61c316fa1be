"""The task history of the SQLite store (and of the memory store, over a private
in-memory SQLite database).

Tables ``gorelay_history_*`` live in the store's file, created on the first
:meth:`SQLiteStore.history` (versioned in ``gorelay_history_meta``).  Writes
use the store's ``BEGIN IMMEDIATE`` transactions, so a batch from any
process is atomic and the counters need no locking of their own.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

from ..errors import StoreError
from . import sql_queries as sq
from .sql import SQLHistory

if TYPE_CHECKING:
    from ..storage.sqlite import SQLiteStore

T = TypeVar("T")
Opener = Callable[[], contextlib.AbstractContextManager[sqlite3.Connection]]


class SQLiteHistory(SQLHistory):
    """:class:`SQLHistory` on sqlite3 connections.

    ``read`` and ``write`` open a connection for reading and a write
    transaction; ``wrap`` turns a sqlite3 error into a :class:`StoreError`.
    """

    def __init__(self, read: Opener, write: Opener,
                 wrap: Callable[[sqlite3.Error], StoreError], where: str) -> None:
        super().__init__(sq.sqlite_dialect(), where)
        self._reader, self._writer, self._wrap = read, write, wrap
        #: .writes: the count of history writes, as this thread's transaction made it
        self._local = threading.local()

    def _read(self, fn: Callable[[Any], T]) -> T:
        with self._reader() as conn:
            try:
                return fn(conn)
            except sqlite3.Error as exc:
                raise self._wrap(exc) from exc

    def _write(self, fn: Callable[[Any], T]) -> T:
        with self._writer() as conn:
            try:
                self._local.writes = int(conn.execute(self.sql(sq.SQL_COUNT_WRITE)).fetchone()[0])
                return fn(conn)
            except sqlite3.Error as exc:
                raise self._wrap(exc) from exc

    def _merge_early(self, plan: Callable[[Any], T]) -> Callable[[Any], T | None] | None:
        """Merge a batch before the write transaction (the file has one writer at a time:
        every other writer of this process waits while it holds the lock).  The
        transaction uses that merge unless a history write came in between."""
        def read(conn: Any) -> tuple[int, T]:
            row = conn.execute(self.sql(sq.SQL_GET_WRITES)).fetchone()  # first: see above
            return (0 if row is None else int(row[0])), plan(conn)

        try:
            seen, early = self._read(read)
        except StoreError:
            return None  # busy or failing: the transaction merges (or reports it)
        return lambda conn: early if self._local.writes == seen + 1 else None

    def ensure_schema(self) -> None:
        """Create the tables unless this release's version is there already."""
        try:
            rows = self._fetch(sq.SQL_GET_VERSION)
        except StoreError:
            rows = []  # no meta table yet
        if rows and int(rows[0][0]) == sq.HISTORY_SCHEMA_VERSION:
            return
        with self._writer() as conn:  # (the meta table _write counts in may not exist yet)
            try:
                self.create_schema(conn)
                conn.execute(self.sql(sq.SQL_COUNT_WRITE))
            except sqlite3.Error as exc:
                raise self._wrap(exc) from exc


def store_history(store: SQLiteStore) -> SQLiteHistory:
    """The history in ``store``'s file, sharing its connections and write lock."""
    history = SQLiteHistory(
        lambda: contextlib.nullcontext(store._conn()), store._write, store._wrap,
        f"the SQLite store {store.path!r}",
    )
    history.ensure_schema()
    return history


class _PrivateDatabase:
    """One in-memory database and its connection, shared by threads under a lock."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.conn = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)

    @contextlib.contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        with self.lock:
            yield self.conn

    @contextlib.contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        with self.lock:
            self.conn.execute("BEGIN")
            try:
                yield self.conn
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
            self.conn.execute("COMMIT")


def _memory_error(exc: sqlite3.Error) -> StoreError:
    return StoreError(f"The memory store's task history failed: {exc}")


def memory_history() -> SQLiteHistory:
    """A history over a new private in-memory database (one per memory store name)."""
    db = _PrivateDatabase()
    history = SQLiteHistory(db.read, db.write, _memory_error, "the memory store")
    history.ensure_schema()
    return history
