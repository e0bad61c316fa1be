"""The task history over SQL, shared by the SQLite, memory and PostgreSQL stores.

A batch is one transaction: lock (PostgreSQL ``FOR UPDATE``; SQLite holds
its write lock anyway) the rows of the batch's tasks in task-id order,
merge the events in Python (:mod:`.merge`), write the rows back, append the
timeline and add the counter changes.  Subclasses provide the connections
(:meth:`SQLHistory._read`, :meth:`SQLHistory._write`) and the dialect.
"""

from __future__ import annotations

import abc
import json
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from ..errors import SchemaVersionError, StoreError
from . import sql_queries as sq
from .base import (
    RUNTIME_BUCKETS,
    STATES,
    EventRecord,
    History,
    Page,
    TaskEvent,
    TaskRecord,
    WorkerBeat,
    WorkerRecord,
)
from .merge import (
    FAILED_METRIC,
    ROW_COLUMNS,
    RUNTIME_METRIC,
    STATE_METRIC,
    SUCCEEDED_METRIC,
    CounterDeltas,
    group_by_task,
    merge_task,
)

T = TypeVar("T")
#: a DB-API connection (sqlite3 or psycopg): execute() and cursor().executemany()
Conn = Any


class ConcurrentInsert(StoreError):
    """A batch lost the race to create a task; its transaction is rolled back and run again."""


class SQLHistory(History):
    """:class:`History` over the tables of :mod:`.sql_queries`."""

    #: True: counter changes go to counter_deltas (compacted later), not counters
    append_counters = False

    def __init__(self, dialect: sq.Dialect, where: str) -> None:
        self.dialect = dialect
        self.where = where  # for errors: the file or schema
        self._sql: dict[str, str] = {}
        self._names_seen: set[str] = set()

    def sql(self, template: str) -> str:
        """``template`` rendered for this dialect and table prefix (cached)."""
        text = self._sql.get(template)
        if text is None:
            text = self._sql[template] = self.dialect.render(template)
        return text

    # -- connections (subclasses) ---------------------------------------------------------
    @abc.abstractmethod
    def _read(self, fn: Callable[[Conn], T]) -> T:
        """Run ``fn`` on a connection, outside a write transaction."""

    @abc.abstractmethod
    def _write(self, fn: Callable[[Conn], T]) -> T:
        """Run ``fn`` in one write transaction (retried as a whole where needed)."""

    def _ids(self, ids: Sequence[str]) -> Any:
        """The ``:ids`` parameter of ``{in_ids}``."""
        return json.dumps(list(ids)) if self.dialect.name == "sqlite" else list(ids)

    def _fetch(self, template: str, params: dict[str, Any] | None = None) -> list[Any]:
        text = self.sql(template)
        return self._read(lambda c: c.execute(text, params or {}).fetchall())

    # -- schema --------------------------------------------------------------------------
    def create_schema(self, conn: Conn) -> None:
        """Create or upgrade the history tables (call inside a write transaction)."""
        conn.execute(self.sql(sq.SQL_META_CREATE))
        row = conn.execute(self.sql(sq.SQL_GET_VERSION)).fetchone()
        version = None if row is None else int(row[0])
        if version is not None and version > sq.HISTORY_SCHEMA_VERSION:
            raise SchemaVersionError(
                f"The task history in {self.where} was written by a newer gorelay-kombu "
                f"(history schema version {version}, this release reads up to "
                f"{sq.HISTORY_SCHEMA_VERSION}). Upgrade gorelay-kombu "
                "(pip install -U gorelay-kombu) or use another store."
            )
        for statement in sq.schema_statements(self.dialect):
            conn.execute(statement)
        if version != sq.HISTORY_SCHEMA_VERSION:
            conn.execute(self.sql(sq.SQL_SET_VERSION), {"version": str(sq.HISTORY_SCHEMA_VERSION)})

    # -- writing -------------------------------------------------------------------------
    def record(self, events: Sequence[TaskEvent]) -> None:
        if not events:
            return
        grouped = group_by_task(events)
        timeline = [{"task_id": e.task_id, "event": e.event, "at": float(e.at),
                     "worker": e.worker, "info": e.info} for e in events]

        def apply(conn: Conn) -> set[str]:
            lock = self.sql(sq.SQL_LOCK_TASKS)
            rows = conn.execute(lock, {"ids": self._ids(list(grouped))}).fetchall()
            existing = {r[0]: dict(zip(ROW_COLUMNS, r, strict=True)) for r in rows}
            deltas = CounterDeltas()
            inserts: list[dict[str, Any]] = []
            updates: list[dict[str, Any]] = []
            names: set[str] = set()
            for task_id, task_events in grouped.items():
                old = existing.get(task_id)
                row = merge_task(old, task_id, task_events, deltas)
                (inserts if old is None else updates).append(row)
                if row["name"] is not None and row["name"] not in self._names_seen:
                    names.add(row["name"])
            cur = conn.cursor()
            if inserts:
                cur.executemany(self.sql(sq.SQL_INSERT_TASK), inserts)
                if cur.rowcount != len(inserts):
                    raise ConcurrentInsert(
                        f"Another writer created one of the tasks {sorted(grouped)[:5]} in "
                        f"{self.where} at the same moment, again and again; retry the batch."
                    )
            if updates:
                cur.executemany(self.sql(sq.SQL_UPDATE_TASK), updates)
            cur.executemany(self.sql(sq.SQL_INSERT_EVENT), timeline)
            self._add_counters(cur, deltas)
            if names:
                cur.executemany(self.sql(sq.SQL_ADD_NAME), [{"name": n} for n in sorted(names)])
            return names

        self._names_seen |= self._write(apply)
        self._after_write()

    def _add_counters(self, cur: Any, deltas: CounterDeltas) -> None:
        rows = deltas.rows()
        if rows:
            template = sq.SQL_ADD_COUNTER_DELTA if self.append_counters else sq.SQL_ADD_COUNTER
            cur.executemany(self.sql(template), rows)

    def _after_write(self) -> None:
        """Hook after a committed write (PostgreSQL compacts its counters)."""

    def heartbeat(self, beats: Sequence[WorkerBeat]) -> None:
        if not beats:
            return
        params = [{
            "hostname": b.hostname, "at": float(b.at), "pid": b.pid, "pool": b.pool,
            "concurrency": b.concurrency,
            "queues": None if b.queues is None else json.dumps(list(b.queues)),
            "started_at": b.started_at, "done": int(b.done), "failed": int(b.failed),
            "stopped": None if b.stopped is None else int(b.stopped),
        } for b in sorted(beats, key=lambda b: b.hostname)]  # sorted: the lock order
        text = self.sql(sq.SQL_HEARTBEAT)
        self._write(lambda c: c.cursor().executemany(text, params))

    def delete_tasks(self, task_ids: Sequence[str]) -> int:
        ids = sorted(set(task_ids))
        if not ids:
            return 0

        def delete(conn: Conn) -> int:
            gone = conn.execute(self.sql(sq.SQL_DELETE_TASKS), {"ids": self._ids(ids)}).fetchall()
            return self._forget(conn, gone)

        return self._write(delete)

    def _forget(self, conn: Conn, gone: list[Any]) -> int:
        """Delete the timelines of deleted ``(task_id, state)`` rows; count them down."""
        if not gone:
            return 0
        conn.execute(self.sql(sq.SQL_DELETE_EVENTS), {"ids": self._ids([r[0] for r in gone])})
        deltas = CounterDeltas()
        for _task_id, state in gone:
            deltas.state_change(state, None)
        self._add_counters(conn.cursor(), deltas)
        return len(gone)

    def prune(self, older_than: dict[str, float], limit: int = 1000) -> int:
        if limit <= 0 or not older_than:
            return 0

        def prune(conn: Conn) -> int:
            gone: list[Any] = []
            for state in sorted(older_than):
                if len(gone) >= limit:
                    break
                params = {"state": state, "before": float(older_than[state]),
                          "limit": limit - len(gone)}
                gone.extend(conn.execute(self.sql(sq.SQL_PRUNE_STATE), params).fetchall())
            return self._forget(conn, gone)

        return self._write(prune)

    def forget_workers(self, seen_before: float) -> int:
        text = self.sql(sq.SQL_FORGET_WORKERS)
        return int(self._write(
            lambda c: c.execute(text, {"before": float(seen_before)}).rowcount))

    # -- reading -------------------------------------------------------------------------
    def task(self, task_id: str) -> TaskRecord | None:
        rows = self._fetch(sq.SQL_TASK, {"task_id": task_id})
        return _record(rows[0]) if rows else None

    def events(self, task_id: str) -> list[EventRecord]:
        rows = self._fetch(sq.SQL_EVENTS, {"task_id": task_id})
        return [EventRecord(r[0], r[1], float(r[2]), r[3], r[4]) for r in rows]

    def tasks(
        self,
        *,
        state: str | None = None,
        queue: str | None = None,
        name: str | None = None,
        root_id: str | None = None,
        search: str | None = None,
        newest_first: bool = True,
        offset: int = 0,
        limit: int = 50,
    ) -> Page:
        given = {"state": state, "queue": queue, "name": name, "root_id": root_id,
                 "search": search}
        params: dict[str, Any] = {k: v for k, v in given.items() if v is not None}
        if search is not None:
            params["search_len"] = len(search)
        template = sq.list_query(params, newest_first)
        params.update(limit=max(int(limit), 0) + 1, offset=max(int(offset), 0))
        rows = self._fetch(template, params)
        items = [_record(r) for r in rows[:max(int(limit), 0)]]
        return Page(items, len(rows) > len(items))

    def _counters(self, metric: str, metric2: str | None = None,
                  since: int = 0) -> list[tuple[str, int, int, float]]:
        rows = self._fetch(sq.SQL_COUNTERS, {"metric": metric, "metric2": metric2 or metric,
                                             "since": since})
        return [(r[0], int(r[1]), int(r[2]), float(r[3])) for r in rows]

    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys(STATES, 0)
        for _metric, bucket, n, _total in self._counters(STATE_METRIC):
            counts[STATES[bucket]] += n
        return counts

    def names(self) -> list[str]:
        return [r[0] for r in self._fetch(sq.SQL_NAMES)]

    def throughput(self, since: float) -> list[tuple[int, int, int]]:
        minutes: dict[int, list[int]] = {}
        for metric, minute, n, _total in self._counters(SUCCEEDED_METRIC, FAILED_METRIC,
                                                        int(since // 60)):
            if n:
                minutes.setdefault(minute, [0, 0])[metric == FAILED_METRIC] += n
        return [(m, s, f) for m, (s, f) in sorted(minutes.items())]

    def runtime_histogram(self) -> tuple[list[tuple[float, int]], int, float]:
        per_bucket = [0] * (len(RUNTIME_BUCKETS) + 1)
        total = 0.0
        for _metric, bucket, n, subtotal in self._counters(RUNTIME_METRIC):
            per_bucket[min(bucket, len(RUNTIME_BUCKETS))] += n
            total += subtotal
        buckets, running = [], 0
        for le, n in zip([*RUNTIME_BUCKETS, float("inf")], per_bucket, strict=True):
            running += n
            buckets.append((le, running))
        return buckets, running, total

    def workers(self) -> list[WorkerRecord]:
        return [WorkerRecord(
            hostname=r[0], pid=r[1], pool=r[2], concurrency=r[3],
            queues=tuple(json.loads(r[4])) if r[4] else (),
            started_at=None if r[5] is None else float(r[5]), last_seen=float(r[6]),
            done=int(r[7]), failed=int(r[8]), stopped=bool(r[9]),
        ) for r in self._fetch(sq.SQL_WORKERS)]


_FLOATS = frozenset({"sent_at", "received_at", "started_at", "finished_at", "updated_at",
                     "eta", "runtime", "next_attempt_at"})
_FLOAT_INDEXES = [i for i, c in enumerate(sq.RECORD_COLUMNS) if c in _FLOATS]


def _record(row: Sequence[Any]) -> TaskRecord:
    values = list(row)
    for i in _FLOAT_INDEXES:  # SQLite hands back a whole-number REAL as written: keep floats
        if values[i] is not None:
            values[i] = float(values[i])
    return TaskRecord(*values)
