"""SQLite task history: index-backed reads, versioned tables, writers in many processes."""

from __future__ import annotations

import itertools
import json
import sqlite3
import subprocess
import sys

import pytest

from gorelay_kombu.errors import SchemaVersionError
from gorelay_kombu.history import TaskEvent
from gorelay_kombu.history import sql_queries as sq
from gorelay_kombu.history.base import TASK_FIELDS
from gorelay_kombu.storage.sqlite import SQLiteStore

TASKS = "gorelay_history_tasks"
FILTERS = ("state", "queue", "name", "root_id")
T0 = 1_700_000_000.0


@pytest.fixture
def store(tmp_path):
    s = SQLiteStore(str(tmp_path / "relay.db"))
    yield s
    s.close()


def plan(store: SQLiteStore, template: str, params: dict) -> list[str]:
    text = store.history().sql(template)
    return [row[3] for row in store._conn().execute("EXPLAIN QUERY PLAN " + text, params)]


def assert_index_only(steps: list[str], table: str = TASKS) -> None:
    """Every step on ``table`` goes through an index, and no sort is needed."""
    for step in steps:
        if table in step:
            assert "USING" in step and "INDEX" in step, steps
    assert not any("TEMP B-TREE" in step for step in steps), steps


COMBINATIONS = [c for n in range(len(FILTERS) + 1) for c in itertools.combinations(FILTERS, n)]
#: every parameter of the UPDATE carrying every task field
UPDATE_PARAMS = dict.fromkeys(
    [*sq.ROW_COLUMNS, *(f"{f}_{part}" for f in TASK_FIELDS for part in ("at", "first"))])


@pytest.mark.parametrize("newest_first", [True, False])
@pytest.mark.parametrize("filters", COMBINATIONS, ids=lambda c: "+".join(c) or "none")
def test_every_listing_without_search_is_index_backed(store, filters, newest_first):
    # Index order serves ORDER BY seq: a page costs offset + limit index entries, at a
    # million tasks as at ten.
    params = {k: "x" for k in filters} | {"limit": 51, "offset": 0}
    steps = plan(store, sq.list_query(filters, newest_first), params)  # as History.tasks
    if not filters:  # seq is the rowid: the table itself is in listing order
        assert steps == [f"SCAN {TASKS}"], steps
        return
    assert_index_only(steps)
    # a filter is an index search, never a walk over every task
    assert any(step.startswith(f"SEARCH {TASKS} USING") for step in steps), steps


@pytest.mark.parametrize("name, template, params", [
    ("task", sq.SQL_TASK, {"task_id": "t"}),
    ("timeline", sq.SQL_TIMELINE, {"task_id": "t"}),
    ("lock_tasks", sq.SQL_LOCK_TASKS, {"ids": '["a", "b"]'}),
    ("update_task", sq.update_task(TASK_FIELDS), UPDATE_PARAMS),
    ("delete_tasks", sq.SQL_DELETE_TASKS, {"ids": '["a"]'}),
    ("prune", sq.SQL_PRUNE_STATE, {"state": "SUCCESS", "before": 1.0, "limit": 10}),
    ("forget_workers", sq.SQL_FORGET_WORKERS, {"before": 1.0}),
])
def test_point_queries_use_indexes(store, name, template, params):
    steps = plan(store, template, params)
    for step in steps:
        if step.startswith("SCAN gorelay_history"):
            pytest.fail(f"{name} scans a table: {steps}")
    assert any(step.startswith("SEARCH gorelay_history") for step in steps), steps


@pytest.mark.parametrize("metric, metric2", [
    ("state", "state"), ("succeeded", "failed"), ("runtime", "runtime"),
])
def test_counters_never_read_the_tasks(store, metric, metric2):
    # counts(), throughput() and runtime_histogram() read counters kept at write
    # time: the key search on the counters table, never the tasks (and their timelines).
    steps = plan(store, sq.SQL_COUNTERS, {"metric": metric, "metric2": metric2, "since": 0})
    assert not any("gorelay_history_tasks" in s for s in steps), steps
    assert any(s.startswith("SEARCH gorelay_history_counters USING") for s in steps), steps


def test_history_tables_are_versioned_and_idempotent(tmp_path):
    path = str(tmp_path / "relay.db")
    first = SQLiteStore(path)
    first.history().record([TaskEvent("t1", "sent", T0, {"name": "shop.add"})])
    first.close()
    second = SQLiteStore(path)  # opening again keeps everything
    assert second.history().task("t1").name == "shop.add"
    second.close()
    db = sqlite3.connect(path)
    version = db.execute("SELECT value FROM gorelay_history_meta"
                         " WHERE key = 'history_schema_version'").fetchone()
    assert version == (str(sq.HISTORY_SCHEMA_VERSION),)
    db.execute("UPDATE gorelay_history_meta SET value = ? WHERE key = 'history_schema_version'",
               (str(sq.HISTORY_SCHEMA_VERSION + 1),))
    db.commit()
    db.close()
    third = SQLiteStore(path)
    try:
        with pytest.raises(SchemaVersionError, match="newer gorelay-kombu.*pip install -U"):
            third.history()
        assert third.size("q") == 0  # the queues still work
    finally:
        third.close()


def test_a_development_version_1_history_is_replaced(tmp_path):
    # Version 1 (never released) kept timelines in a table of their own and listed by
    # updated_at; its task tables are replaced, the queues and workers kept.
    path = str(tmp_path / "relay.db")
    SQLiteStore(path).close()
    db = sqlite3.connect(path)
    db.executescript("""
        CREATE TABLE gorelay_history_meta (key text PRIMARY KEY, value text NOT NULL);
        INSERT INTO gorelay_history_meta VALUES ('history_schema_version', '1');
        CREATE TABLE gorelay_history_tasks (task_id text PRIMARY KEY, state text NOT NULL,
                                            updated_at float8 NOT NULL, field_at text NOT NULL);
        CREATE INDEX gorelay_history_tasks_state ON gorelay_history_tasks (state, updated_at);
        CREATE TABLE gorelay_history_events (id INTEGER PRIMARY KEY, task_id text NOT NULL);
        CREATE TABLE gorelay_history_counters (metric text NOT NULL, bucket bigint NOT NULL,
            n bigint NOT NULL, total float8 NOT NULL, PRIMARY KEY (metric, bucket));
        INSERT INTO gorelay_history_tasks VALUES ('old', 'SUCCESS', 1.0, '{}');
        INSERT INTO gorelay_history_counters VALUES ('state', 4, 1, 0);
    """)
    db.close()
    reopened = SQLiteStore(path)
    try:
        h = reopened.history()
        h.record([TaskEvent("t1", "sent", T0, {"name": "shop.add"})])
        assert h.task("t1").name == "shop.add" and h.task("old") is None
        assert {k: v for k, v in h.counts().items() if v} == {"PENDING": 1}
        names = {r[0] for r in reopened._conn().execute("SELECT name FROM sqlite_master")}
        assert "gorelay_history_events" not in names
        assert reopened.size("q") == 0
    finally:
        reopened.close()


def test_a_store_without_history_has_no_history_tables(store):
    names = {r[0] for r in store._conn().execute("SELECT name FROM sqlite_master")}
    assert not any(n.startswith("gorelay_history") for n in names)
    store.history()
    names = {r[0] for r in store._conn().execute("SELECT name FROM sqlite_master")}
    assert {"gorelay_history_tasks", "gorelay_history_counters", "gorelay_history_names"} <= names


WRITER = """
import sys
from gorelay_kombu.history import TaskEvent, WorkerBeat
from gorelay_kombu.storage.sqlite import SQLiteStore
store = SQLiteStore(sys.argv[1])
h = store.history()
me, n = sys.argv[2], int(sys.argv[3])
print("ready", flush=True)
sys.stdin.readline()
T0 = 1_700_000_000.0
for i in range(n):
    # every process reports on the same tasks: the producer's view and the worker's
    task = f"t{i}"
    if me == "producer":
        h.record([TaskEvent(task, "sent", T0 + i, {"name": "shop.add", "args": f"({i},)"})])
    else:
        h.record([TaskEvent(task, "started", T0 + i + 0.5, {"worker": me}),
                  TaskEvent(task, "succeeded", T0 + i + 0.75, {"runtime": 0.25})])
    h.heartbeat([WorkerBeat(me, T0 + i, done=1)])
store.close()
print("done", flush=True)
"""


def test_writers_in_many_processes_keep_exact_counters(store):
    store.history()  # tables exist before the race (creation is also safe under it)
    n = 60
    roles = ["producer", "worker"]
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, store.path, role, str(n)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
             for role in roles]
    try:
        for p in procs:
            assert p.stdout is not None and p.stdout.readline().strip() == "ready"
        for p in procs:
            assert p.stdin is not None
            p.stdin.write("go\n")
            p.stdin.flush()
        for p in procs:
            out, _ = p.communicate(timeout=120)
            assert out.strip() == "done" and p.returncode == 0
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    h = store.history()
    assert h.counts()["SUCCESS"] == n and sum(h.counts().values()) == n
    record = h.task("t7")
    assert (record.state, record.name, record.args, record.worker) == (
        "SUCCESS", "shop.add", "(7,)", "worker")
    assert [e.event for e in h.events("t7")] == ["sent", "started", "succeeded"]
    assert h.runtime_histogram()[1] == n
    assert sum(s for _, s, _ in h.throughput(0)) == n
    assert sorted((w.hostname, w.done) for w in h.workers()) == [("producer", n), ("worker", n)]
    assert json.loads(json.dumps(h.names())) == ["shop.add"]


def test_opening_a_current_store_and_history_takes_no_write_lock(tmp_path):
    # The outbox case: a web handler's own transaction holds the write lock
    # when the first enqueue opens the store in the same thread.
    path = str(tmp_path / "relay.db")
    SQLiteStore(path).history()  # creates everything once
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        opened = SQLiteStore(path, {"busy_timeout": 0.2})  # would raise StoreUnavailable
        try:
            assert opened.history().counts()["PENDING"] == 0
            assert opened.size("q") == 0
        finally:
            opened.close()
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def test_a_batch_merged_before_the_lock_is_merged_again_after_another_write(tmp_path):
    """A writer merges its batch before taking the file's write lock (so the lock is held
    only to write); a history write that lands in between makes it merge again."""
    path = str(tmp_path / "relay.db")
    mine, other = SQLiteStore(path), SQLiteStore(path)
    try:
        history = mine.history()
        history.record([TaskEvent("t", "sent", T0, {"name": "n", "queue": "q"})])
        merges = []
        cls = type(history)
        real_plan, real_early = cls._plan, cls._merge_early

        def counting_plan(self, rows, by_task, counted):
            if self is history:
                merges.append(len(rows))
            return real_plan(self, rows, by_task, counted)

        def early_then_other_write(self, plan):
            got = real_early(self, plan)  # merged on what is stored now
            if self is history:  # another process records a later event meanwhile
                other.history().record([TaskEvent("t", "succeeded", T0 + 3, {"result": "1"},
                                                  "w")])
            return got

        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(cls, "_plan", counting_plan)
            history.record([TaskEvent("t", "received", T0 + 1, {}, "w")])
            assert merges == [1]  # nothing came in between: the early merge was used
            mp.setattr(cls, "_merge_early", early_then_other_write)
            merges.clear()
            history.record([TaskEvent("t", "started", T0 + 2, {}, "w")])
            assert merges == [1, 1]  # early, then again under the lock
        task = history.task("t")
        assert task is not None
        assert task.state == "SUCCESS"  # the later event wins, not the stale merge
        assert task.result == "1"
        assert [e.event for e in history.events("t")] == ["sent", "received", "started",
                                                           "succeeded"]
    finally:
        mine.close()
        other.close()
