"""PostgreSQL task history: concurrent writers, counter compaction, index-backed reads."""

from __future__ import annotations

import itertools
import subprocess
import sys

import pytest

pytest.importorskip("psycopg")

from gorelay_kombu.errors import SchemaVersionError  # noqa: E402
from gorelay_kombu.history import TaskEvent  # noqa: E402
from gorelay_kombu.history import sql_queries as sq  # noqa: E402
from gorelay_kombu.storage.postgres import PostgresStore  # noqa: E402
from tests import server_postgresql as server  # noqa: E402

T0 = 1_700_000_000.0


@pytest.fixture
def store():
    s = server.make_store()
    yield s
    server.cleanup(s)


def admin():
    import psycopg

    return psycopg.connect(server.URL, autocommit=True)


WRITER = """
import random, sys
from gorelay_kombu.history import TaskEvent
from gorelay_kombu.storage.postgres import PostgresStore
store = PostgresStore(sys.argv[1], {"schema": sys.argv[2]})
h = store.history()
me, n, tasks = sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
rng = random.Random(me)
print("ready", flush=True)
sys.stdin.readline()
T0 = 1_700_000_000.0
sent = 0
for i in range(n):
    # batches over a few shared tasks, each in its own order, and over tasks that
    # every writer creates at the same moment: lock order and retries must keep
    # every batch whole
    ids = [f"t{rng.randrange(tasks)}" for _ in range(rng.randrange(1, 4))]
    ids += [f"new{i}-{rng.randrange(2)}" for _ in range(rng.randrange(0, 3))]
    h.record([TaskEvent(task_id, rng.choice(["sent", "started", "succeeded"]),
                        T0 + rng.random() * 100, {"worker": me, "runtime": 0.5})
              for task_id in ids])
    sent += len(ids)
store.close()
print("done", sent, flush=True)
"""


def test_concurrent_writers_on_the_same_tasks_keep_counts_exact(store):
    store.history()
    n, tasks, writers = 80, 12, 4
    procs = [subprocess.Popen(
        [sys.executable, "-c", WRITER, server.URL, store.schema, f"w{i}", str(n), str(tasks)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i in range(writers)]
    try:
        for p in procs:
            assert p.stdout is not None and p.stdout.readline().strip() == "ready"
        for p in procs:
            assert p.stdin is not None
            p.stdin.write("go\n")
            p.stdin.flush()
        sent = []
        for p in procs:
            out, err = p.communicate(timeout=180)
            assert p.returncode == 0 and out.split()[0] == "done", err
            sent.append(int(out.split()[1]))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    h = store.history()
    counts = h.counts()
    assert sum(counts.values()) == len(h.tasks(limit=1000).items) > tasks
    with admin() as conn:
        per_state = dict(conn.execute(
            f'SELECT state, count(*) FROM "{store.schema}".history_tasks GROUP BY state'))
    assert {k: v for k, v in counts.items() if v} == per_state
    timelines = {r.task_id: h.events(r.task_id) for r in h.tasks(limit=1000).items}
    # every event of every batch is in, and counted once
    assert h.runtime_histogram()[1] == sum(len(t) for t in timelines.values()) == sum(sent)
    for record in h.tasks(limit=1000).items:
        timeline = timelines[record.task_id]
        latest = max(timeline, key=lambda e: e.at)
        assert record.updated_at == latest.at
        assert record.state == {"sent": "PENDING", "started": "STARTED",
                                "succeeded": "SUCCESS"}[latest.event]


def test_counter_deltas_are_compacted_and_reads_add_both(store):
    h = store.history()
    h.record([TaskEvent(f"t{i}", "succeeded", T0 + i, {"runtime": 0.2}) for i in range(5)])
    h.compact()
    h.record([TaskEvent("t9", "failed", T0 + 9, {"runtime": 2.0})])  # may stay a delta
    assert h.counts()["SUCCESS"] == 5 and h.counts()["FAILURE"] == 1
    assert h.runtime_histogram()[1:] == (6, pytest.approx(3.0))
    assert h.compact() is True
    with admin() as conn:
        left = conn.execute(
            f'SELECT count(*) FROM "{store.schema}".history_counter_deltas').fetchone()[0]
    assert left == 0
    assert h.counts()["SUCCESS"] == 5 and h.counts()["FAILURE"] == 1
    assert h.throughput(T0) == [(int(T0 // 60), 5, 1)]


FILTERS = ("state", "queue", "name", "root_id")
COMBINATIONS = [c for n in range(len(FILTERS) + 1) for c in itertools.combinations(FILTERS, n)]


@pytest.mark.parametrize("filters", COMBINATIONS, ids=lambda c: "+".join(c) or "none")
def test_listings_can_use_indexes(store, filters):
    h = store.history()
    h.record([TaskEvent(f"t{i}", "sent", T0 + i, {"queue": "q", "name": "n", "root_id": "r"})
              for i in range(50)])
    text = h.sql(sq.list_query(filters, True))
    params = {k: "x" for k in filters} | {"limit": 51, "offset": 0}
    with admin() as conn, conn.transaction():
        conn.execute("SET LOCAL enable_seqscan = off")
        plan = "\n".join(r[0] for r in conn.execute("EXPLAIN " + text, params))
    assert "Seq Scan" not in plan and "Sort" not in plan, plan


def test_history_tables_are_versioned(store):
    store.history().record([TaskEvent("t1", "sent", T0)])
    again = PostgresStore(server.URL, {"schema": store.schema})
    try:
        assert again.history().task("t1") is not None
    finally:
        again.close()
    with admin() as conn:
        conn.execute(f'UPDATE "{store.schema}".history_meta SET value = %s'
                     " WHERE key = 'history_schema_version'",
                     (str(sq.HISTORY_SCHEMA_VERSION + 1),))
    newer = PostgresStore(server.URL, {"schema": store.schema})
    try:
        with pytest.raises(SchemaVersionError, match="newer gorelay-kombu"):
            newer.history()
    finally:
        newer.close()
