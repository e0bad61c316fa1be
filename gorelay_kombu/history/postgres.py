"""The task history of the PostgreSQL store.

Tables ``history_*`` live in the store's schema, created on the first
:meth:`PostgresStore.history` (under the schema's advisory lock, versioned
in ``history_meta``), and use the store's connection pool.

Many worker processes write at once, so a batch takes its row locks in one
order (tasks by id, then names), counter changes are only appended to
``history_counter_deltas`` (no hot counter rows to wait or deadlock on) and
folded into ``history_counters`` about once a second by one process at a
time.  A batch that still meets a deadlock, a serialization failure or a
concurrent first insert of the same task (:class:`ConcurrentInsert`) is
rolled back and run again.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from psycopg import errors as pg_errors

from ..errors import StoreError
from ..storage import postgres_sql as store_sql
from . import sql_queries as sq
from .sql import ConcurrentInsert, SQLHistory

if TYPE_CHECKING:
    from ..storage.postgres import PostgresStore

T = TypeVar("T")

#: driver errors after which the whole batch is run again in a new transaction
RETRYABLE = (pg_errors.DeadlockDetected, pg_errors.SerializationFailure,
             pg_errors.UniqueViolation)
SQL_TRY_LOCK = "SELECT pg_try_advisory_xact_lock(hashtext(%s))"
SQL_TABLE_EXISTS = "SELECT to_regclass(%s) IS NOT NULL"


class PostgresHistory(SQLHistory):
    """:class:`SQLHistory` on the PostgreSQL store's pool; see the module docstring."""

    append_counters = True
    #: least seconds between two counter compactions started by this object
    compact_seconds = 1.0
    #: attempts of a batch that meets a deadlock or a concurrent insert
    attempts = 10

    def __init__(self, store: PostgresStore) -> None:
        quoted = store.q("{s}")
        super().__init__(sq.postgres_dialect(quoted), f"schema {store.schema!r} of "
                         f"{store.display}")
        self._store = store
        self._meta = f"{quoted}.history_meta"
        self._compact_key = f"{store.channel}.history-counters"
        self._compacted = 0.0
        self.ensure_schema()

    def _read(self, fn: Callable[[Any], T]) -> T:
        return self._store._run(fn, idempotent=True)

    def _write(self, fn: Callable[[Any], T]) -> T:
        def txn(conn: Any) -> T:
            with conn.transaction():
                return fn(conn)

        for attempt in range(self.attempts):
            try:
                # Not retried on a dropped connection: a commit whose answer was
                # lost would append the timeline twice.
                return self._store._run(txn, idempotent=False)
            except StoreError as exc:
                again = isinstance(exc, ConcurrentInsert) or isinstance(exc.__cause__, RETRYABLE)
                if not again or attempt == self.attempts - 1:
                    raise
            time.sleep(random.uniform(0, 0.002 * 2 ** attempt))
        raise AssertionError("unreachable")  # pragma: no cover

    def ensure_schema(self) -> None:
        """Create the tables unless this release's version is there already."""

        def current(conn: Any) -> bool:
            if not conn.execute(SQL_TABLE_EXISTS, (self._meta,)).fetchone()[0]:
                return False
            row = conn.execute(self.sql(sq.SQL_GET_VERSION)).fetchone()
            return row is not None and int(row[0]) == sq.HISTORY_SCHEMA_VERSION

        if self._read(current):
            return  # the usual case: no lock, no DDL

        def create(conn: Any) -> None:
            conn.execute(store_sql.SQL_LOCK_SCHEMA, (self._store.channel,))
            self.create_schema(conn)

        self._write(create)

    def _after_write(self) -> None:
        now = time.monotonic()
        if now - self._compacted >= self.compact_seconds:
            self._compacted = now
            self.compact()

    def compact(self) -> bool:
        """Fold the counter deltas into the counters; False when another process is at it."""

        def fold(conn: Any) -> bool:
            if not conn.execute(SQL_TRY_LOCK, (self._compact_key,)).fetchone()[0]:
                return False
            conn.execute(self.sql(sq.SQL_COMPACT_COUNTERS))
            return True

        return self._write(fold)
