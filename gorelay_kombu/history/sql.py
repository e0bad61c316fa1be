"""The task history over SQL, shared by the SQLite, memory and PostgreSQL stores.

The events of a batch are grouped per task before the transaction
(:mod:`.merge`).  The transaction reads and locks (PostgreSQL ``FOR UPDATE``;
SQLite holds its write lock anyway) a few columns of those tasks, in task-id
order, merges each task's events with them, inserts the new tasks (in task-id
order: that is how a batch's new tasks are listed) and updates each other one
with a statement setting only what moves (the timeline is appended to the
task's row), and adds the counter changes.  SQLite, where a write blocks
every other writer of the file, merges before the transaction instead and
only checks in it that no history write came in between
(:meth:`SQLHistory._merge_early`).  Subclasses provide the connections
(:meth:`SQLHistory._read`, :meth:`SQLHistory._write`) and the dialect.
"""

from __future__ import annotations

import abc
import json
import operator
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
    group,
    insert_params,
    update_params,
)

T = TypeVar("T")
_NO_ROW = dict.fromkeys(ROW_COLUMNS)  # an INSERT giving every column: the missing ones NULL
#: a DB-API connection (sqlite3 or psycopg): execute() and cursor().executemany()
Conn = Any


class ConcurrentInsert(StoreError):
    """A batch lost the race to create a task; its transaction is rolled back and run again."""


class _Plan:
    """The writes of one batch: new task rows, updates by shape, counters, new names."""

    __slots__ = ("deltas", "inserts", "updates", "names")

    def __init__(self, deltas: CounterDeltas) -> None:
        self.deltas = deltas
        self.inserts: list[dict[str, Any]] = []
        self.updates: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        self.names: set[str] = set()


class SQLHistory(History):
    """:class:`History` over the tables of :mod:`.sql_queries`."""

    #: True: counter changes go to counter_deltas (compacted later), not counters
    append_counters = False

    def __init__(self, dialect: sq.Dialect, where: str) -> None:
        self.dialect = dialect
        self.where = where  # for errors: the file or schema
        self._sql: dict[str, str] = {}
        #: (builder, shape) -> positional statement and its parameter getter
        self._statements: dict[tuple[Any, tuple[str, ...]], tuple[str, Any]] = {}
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
        if version == 1:
            for statement in sq.SQL_DROP_V1:
                conn.execute(self.sql(statement))
        for statement in sq.schema_statements(self.dialect):
            conn.execute(statement)
        if version != sq.HISTORY_SCHEMA_VERSION:
            conn.execute(self.sql(sq.SQL_SET_VERSION), {"version": str(sq.HISTORY_SCHEMA_VERSION)})

    # -- writing -------------------------------------------------------------------------
    def record(self, events: Sequence[TaskEvent]) -> None:
        if not events:
            return
        by_task, counted = group(events)
        ids = self._ids(list(by_task))
        lock_sql = self.sql(sq.SQL_LOCK_TASKS)
        early = self._merge_early(lambda c: self._plan(
            c.execute(lock_sql, {"ids": ids}).fetchall(), by_task, counted))

        def apply(conn: Conn) -> _Plan:
            plan = early(conn) if early is not None else None
            if plan is None:  # merge under the lock (rows read now, locked by PostgreSQL)
                plan = self._plan(conn.execute(lock_sql, {"ids": ids}).fetchall(), by_task,
                                  counted)
            cur = conn.cursor()
            if plan.inserts:
                self._insert(conn, cur, plan.inserts)
            for shape, params_list in plan.updates.items():  # rows locked: any order
                text, values = self._statement(sq.update_task, shape)
                cur.executemany(text, [values(p) for p in params_list])
            self._add_counters(cur, plan.deltas)
            if plan.names:
                cur.executemany(self.sql(sq.SQL_ADD_NAME),
                                [{"name": n} for n in sorted(plan.names)])
            return plan

        self._names_seen |= self._write(apply).names
        self._after_write()

    def _merge_early(self, plan: Callable[[Conn], _Plan]
                     ) -> Callable[[Conn], _Plan | None] | None:
        """Hook: merge before the write transaction, so that it holds its lock only to
        write.  Returns what the transaction calls to get that merge if no other
        writer changed the history since (None: merge in the transaction)."""
        return None

    def _plan(self, rows: Sequence[Any], by_task: dict[str, list[TaskEvent]],
              counted: CounterDeltas) -> _Plan:
        """What a batch writes, given its stored tasks' :data:`~.merge.LOCKED_COLUMNS`."""
        stored = {r[0]: r for r in rows}
        plan = _Plan(counted.copy())  # (a plan may be made again: retries, stale reads)
        deltas = plan.deltas
        for task_id, task_events in by_task.items():
            old = stored.get(task_id)
            if old is None:
                params = insert_params(task_id, task_events)
                plan.inserts.append(params)
                deltas.state_change(None, params["state"])
            else:
                shape, params, state = update_params(old, task_events)
                plan.updates.setdefault(shape, []).append(params)
                deltas.state_change(old[1], state)
            name = params.get("name")
            if name is not None and name not in self._names_seen:
                plan.names.add(name)
        return plan

    def _insert(self, conn: Conn, cur: Any, rows: list[dict[str, Any]]) -> None:
        """Insert new task rows (task-id order: the order they are listed in)."""
        if self.dialect.numbers_tasks:  # one statement per set of columns given
            seq = conn.execute(self.sql(sq.SQL_LAST_SEQ)).fetchone()[0]
            groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
            for row in rows:
                seq += 1
                row["seq"] = seq
                groups.setdefault(tuple(row), []).append(row)
        else:  # one statement for all, in task-id order (the lock order)
            groups = {ROW_COLUMNS: [{**_NO_ROW, **row} for row in rows]}
        inserted = 0
        for columns, group_rows in groups.items():
            text, values = self._statement(sq.insert_task, columns)
            cur.executemany(text, [values(r) for r in group_rows])
            inserted += cur.rowcount
        if inserted != len(rows):
            raise ConcurrentInsert(
                f"Another writer created one of the tasks {[r['task_id'] for r in rows][:5]} "
                f"in {self.where} at the same moment, again and again; retry the batch."
            )

    def _statement(self, build: Callable[[tuple[str, ...]], str], shape: tuple[str, ...],
                   ) -> tuple[str, Callable[[dict[str, Any]], tuple[Any, ...]]]:
        """The statement ``build(shape)`` with positional parameters (cached) and the
        function picking its parameters out of a dict."""
        key = (build, shape)
        found = self._statements.get(key)
        if found is None:
            text, names = self.dialect.render_positional(build(shape))
            get = operator.itemgetter(*names)
            found = self._statements[key] = (
                text, get if len(names) > 1 else lambda p: (get(p),))
        return found

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
        """Count deleted ``(task_id, state)`` rows down (their timelines went with them)."""
        if not gone:
            return 0
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
        rows = self._fetch(sq.SQL_TIMELINE, {"task_id": task_id})
        if not rows:
            return []
        timeline = [EventRecord(task_id, e[0], float(e[1]), e[2], e[3])
                    for e in json.loads(f"[{rows[0][0]}]")]
        timeline.sort(key=lambda e: e.at)  # stable: arrival order among equal times
        return timeline

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
