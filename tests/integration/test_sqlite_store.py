"""SQLite-specific promises: WAL, idempotent versioned schema, index-backed hot queries."""

from __future__ import annotations

import gc
import os
import sqlite3
import threading
import time

import pytest

from gorelay_kombu.storage import sqlite as sq
from gorelay_kombu.storage import sqlite_sql as q
from gorelay_kombu.storage.base import NewMessage

HOT_QUERIES = {
    "lease_head": (q.SQL_LEASE_HEAD, (1.0, "o", "q", 10)),
    "ready_head": (q.SQL_READY_HEAD, ("q", 10)),
    "any_ready": (q.SQL_ANY_READY, ("q",)),
    "any_due": (q.SQL_ANY_DUE, (1.0,)),
    "restore_due": (q.SQL_RESTORE_DUE, (1.0,)),
    "next_due": (q.SQL_NEXT_DUE, ()),
    "renew": (q.SQL_RENEW, (1.0, 1, "o")),
    "any_expired": (q.SQL_ANY_EXPIRED, (1.0,)),
    "drop_expired": (q.SQL_DROP_EXPIRED, (1.0,)),
    "release": (q.SQL_RELEASE, (1.0, 1, "o")),
    "ack": (q.SQL_ACK, (1,)),
    "size": (q.SQL_SIZE, ("q",)),
    "put": (q.SQL_PUT, ("q", 1, 0, 1.0, 1.0, b"x", None)),
    "put_routed": (q.SQL_PUT_ROUTED, ("x", "k", 1, 0, 1.0, 1.0, b"x", None)),
    "put_routed_no_expiry": (q.SQL_PUT_ROUTED_NO_EXPIRY, ("x", "k", 1, 0, 1.0, 1.0, b"x")),
    "probe": (q._probe_sql(2), (1.0, 1.0, "a", "b")),
}


@pytest.fixture
def store(tmp_path):
    s = sq.SQLiteStore(str(tmp_path / "relay.db"))
    yield s
    s.close()


@pytest.mark.parametrize("name", sorted(HOT_QUERIES))
def test_hot_queries_never_scan_the_messages_table(store, name):
    # O(log n) at a million queued messages means: every hot query is an index search.
    sql, params = HOT_QUERIES[name]
    plan = [row[3] for row in store._conn().execute("EXPLAIN QUERY PLAN " + sql, params)]
    assert not any(step.startswith("SCAN gorelay_messages") for step in plan), plan
    assert not any(step.startswith("SCAN gorelay_bindings") for step in plan), plan


def test_wal_and_synchronous_normal_by_default(store):
    conn = store._conn()
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 30_000


def test_schema_is_idempotent_and_versioned(tmp_path):
    path = str(tmp_path / "relay.db")
    first = sq.SQLiteStore(path)
    first.put(NewMessage("q", b"kept"))
    first.close()
    second = sq.SQLiteStore(path)  # opening again changes nothing
    assert second.size("q") == 1
    second.close()
    db = sqlite3.connect(path)
    assert db.execute(q.SQL_GET_VERSION).fetchone()[0] == str(q.SCHEMA_VERSION)
    db.close()


def test_connections_are_not_shared_across_fork(store):
    import os

    store.put(NewMessage("q", b"x"))
    pid = os.fork()
    if pid == 0:  # child: must open its own connection and see the data
        try:
            os._exit(0 if store.size("q") == 1 else 1)
        except BaseException:
            os._exit(2)
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 0
    assert store.size("q") == 1  # the parent's connection still works


def test_binding_changes_reach_a_caching_reader_at_once(tmp_path):
    path = str(tmp_path / "relay.db")
    reader, writer = sq.SQLiteStore(path), sq.SQLiteStore(path)
    try:
        assert reader.bindings("ex") == []  # now cached in the reader
        writer.bind("ex", "rk", None, "q1")
        assert reader.bindings("ex") == [("rk", None, "q1")]
        writer.bind("ex", "rk", None, "q2")
        assert sorted(reader.bindings("ex")) == [("rk", None, "q1"), ("rk", None, "q2")]
        writer.unbind("ex", "rk", "q1")
        assert reader.bindings("ex") == [("rk", None, "q2")]
        writer.delete_queue("q2")
        assert reader.bindings("ex") == []
    finally:
        reader.close()
        writer.close()


def test_finished_threads_do_not_keep_connections_open(store):
    # a thread-per-request web app enqueues from many short-lived threads
    def fds() -> int:
        return len(os.listdir("/proc/self/fd"))

    store.size("q")
    gc.collect()
    before = fds()
    for _ in range(30):
        t = threading.Thread(target=store.size, args=("q",))
        t.start()
        t.join()
    gc.collect()
    # not 30 more (each connection holds the db and its WAL); the checkpointer's one
    # connection (db, WAL, shm) may open meanwhile
    assert fds() <= before + 5
    assert store.size("q") == 0  # the store still works in this thread


def test_checkpoints_follow_a_stream_of_commits(tmp_path, monkeypatch):
    """While commits keep coming, the background checkpointer keeps copying the WAL
    back into the database file (not once per ``interval``), so no publish has to
    pay for a large checkpoint itself."""
    from gorelay_kombu.storage.sqlite_checkpoint import Checkpointer

    monkeypatch.setattr(Checkpointer, "interval", 3600.0)  # only busy rounds can run
    monkeypatch.setattr(Checkpointer, "busy_interval", 0.01)
    path = str(tmp_path / "relay.db")
    s = sq.SQLiteStore(path)
    try:
        s.declare_queue("q")
        grew = 0
        size = os.path.getsize(path)
        for _ in range(2000):  # stops as soon as the file grew three times
            s.put_many([NewMessage("q", b"x" * 2000, 1, 0.0, None) for _ in range(20)])
            now = os.path.getsize(path)
            if now > size:
                grew, size = grew + 1, now
                if grew == 3:
                    break
            time.sleep(0.005)
        assert grew == 3, "the WAL was not checkpointed while commits kept coming"
    finally:
        s.close()
