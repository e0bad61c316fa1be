"""PostgreSQL-specific promises: index-backed queries, SKIP LOCKED between
processes, schema isolation and versioning, clear errors, reconnection."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid

import pytest

pytest.importorskip("psycopg")

from kombu import Connection, Consumer, Producer, Queue  # noqa: E402

import gorelay_kombu  # noqa: E402, F401
from gorelay_kombu.errors import (  # noqa: E402
    InvalidOption,
    SchemaVersionError,
    StoreAuthenticationError,
    StoreLocationError,
    StorePermissionError,
    StoreUnavailable,
)
from gorelay_kombu.storage import NewMessage  # noqa: E402
from gorelay_kombu.storage import postgres_sql as q  # noqa: E402
from gorelay_kombu.storage.postgres import PostgresStore  # noqa: E402
from tests import server_postgresql as server  # noqa: E402


def admin():
    import psycopg

    return psycopg.connect(server.URL, autocommit=True)


def url_with(**parts: str) -> str:
    """The test server's URL with user, host, port or dbname replaced."""
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    params = conninfo_to_dict(server.URL)
    params.update(parts)
    return make_conninfo("", **params)


@pytest.fixture
def store():
    s = server.make_store(application_name=f"gorelay-test-{uuid.uuid4().hex[:12]}")
    yield s
    server.cleanup(s)


@pytest.fixture
def schema():
    server.require_postgres()
    name = server.new_schema()
    yield name
    server.drop_schema(name)


HOT = {
    "lease_head": (q.SQL_LEASE_HEAD, {"until": 1.0, "owner": "o", "queue": "q", "limit": 10}),
    "lease_heads": (q.SQL_LEASE_HEADS,
                    {"until": 1.0, "owner": "o", "queues": ["a", "b"], "limit": 10}),
    "restore_due": (q.SQL_RESTORE_DUE, (1.0,)),
    "drop_expired": (q.SQL_DROP_EXPIRED, (1.0,)),
    "next_due": (q.SQL_NEXT_DUE, ()),
    "ack": (q.SQL_ACK, ([1, 2],)),
    "renew": (q.SQL_RENEW, (1.0, [1, 2], "o")),
    "release": (q.SQL_RELEASE, {"now": 1.0, "ids": [1], "owner": "o", "channel": "c"}),
    "size": (q.SQL_SIZE, ("q",)),
    "purge": (q.SQL_PURGE, ("q",)),
    "dead_letters": (q.SQL_DEAD_LETTERS, ("q",)),
    "delete_queue": (q.SQL_DELETE_QUEUE, {"q": "q"}),
    "expire_idle": (q.SQL_EXPIRE_IDLE_QUEUES, (1.0,)),
}


@pytest.mark.parametrize("name", sorted(HOT))
def test_hot_queries_can_use_indexes(store, name):
    # With sequential scans priced out, a plan that still scans the messages
    # table means no index serves the query: O(n) at a million messages.
    store.put_many([NewMessage("q", b"x") for _ in range(50)])
    template, params = HOT[name]
    with admin() as conn, conn.transaction():
        conn.execute("SET LOCAL enable_seqscan = off")
        plan = "\n".join(r[0] for r in conn.execute("EXPLAIN " + store.q(template), params))
    assert "Seq Scan on messages" not in plan, plan


def test_reserve_skips_rows_locked_by_another_transaction(store):
    ids = store.put_many([NewMessage("q", str(i).encode()) for i in range(3)])
    got: list = []
    with admin() as conn, conn.transaction():
        conn.execute(f'SELECT 1 FROM "{store.schema}".messages WHERE id = %s FOR UPDATE',
                     (ids[0],))
        worker = threading.Thread(target=lambda: got.extend(store.reserve(["q"], 10, "w", 30)))
        worker.start()
        worker.join(60)  # would hang while our transaction holds the lock, without SKIP LOCKED
        blocked = worker.is_alive()
    worker.join()
    assert not blocked
    assert [r.payload for r in got] == [b"1", b"2"]


CONSUMER = """
import json, sys
from gorelay_kombu.storage.postgres import PostgresStore
store = PostgresStore(sys.argv[1], {"schema": sys.argv[2]})
seen = []
print("ready", flush=True)
sys.stdin.readline()  # start together
while True:
    got = store.reserve(["q"], 7, sys.argv[3], 30)
    if not got:
        break
    seen.extend(r.payload.decode() for r in got)
    store.ack([r.id for r in got])
print(json.dumps(seen), flush=True)
store.close()
"""


def test_competing_consumer_processes_never_share_a_message(store):
    n = 2000
    store.put_many([NewMessage("q", str(i).encode()) for i in range(n)])
    procs = [subprocess.Popen([sys.executable, "-c", CONSUMER, server.URL, store.schema, f"w{i}"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
             for i in range(4)]
    for p in procs:
        assert p.stdout is not None and p.stdout.readline().strip() == "ready"
    for p in procs:
        assert p.stdin is not None
        p.stdin.write("go\n")
        p.stdin.flush()
    results = [json.loads(p.communicate(timeout=120)[0].strip().splitlines()[-1]) for p in procs]
    everything = [body for seen in results for body in seen]
    assert sorted(everything, key=int) == [str(i) for i in range(n)]  # no dupes, no losses
    assert store.size("q") == 0


def test_schemas_isolate_stores(store):
    other = server.make_store()
    try:
        store.put(NewMessage("q", b"mine"))
        store.kv_set("k", b"v")
        store.bind("ex", "rk", None, "q")
        assert other.size("q") == 0 and other.kv_get("k") is None
        assert other.bindings("ex") == []
        with admin() as conn:
            tables = {r[0] for r in conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
                (store.schema,))}
        assert tables == {"meta", "queues", "messages", "exchanges", "bindings", "kv"}
    finally:
        server.cleanup(other)


def test_schema_is_idempotent_and_versioned(schema):
    first = PostgresStore(server.URL, {"schema": schema})
    first.put(NewMessage("q", b"kept"))
    first.close()
    second = PostgresStore(server.URL, {"schema": schema})  # opening again changes nothing
    assert second.size("q") == 1
    second.close()
    with admin() as conn:
        version = conn.execute(f'SELECT value FROM "{schema}".meta'
                               " WHERE key = 'schema_version'").fetchone()
        assert version == (str(q.SCHEMA_VERSION),)
        conn.execute(f'UPDATE "{schema}".meta SET value = %s WHERE key = %s',
                     (str(q.SCHEMA_VERSION + 1), "schema_version"))
    with pytest.raises(SchemaVersionError, match="newer gorelay-kombu.*pip install -U"):
        PostgresStore(server.URL, {"schema": schema})


def test_concurrent_first_use_creates_the_schema_once(schema):
    errors: list[BaseException] = []

    def open_store() -> None:
        try:
            PostgresStore(server.URL, {"schema": schema}).close()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=open_store) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_put_many_is_one_transaction(store):
    with pytest.raises(Exception):  # noqa: B017 - lane 99999 overflows smallint
        store.put_many([NewMessage("q", b"ok"), NewMessage("q", b"bad", lane=99999)])
    assert store.size("q") == 0


# -- bad input ----------------------------------------------------------------
class _CountingConn:
    """A pooled connection that counts the statements sent through it."""

    def __init__(self, conn, log: list) -> None:
        self._conn, self._log = conn, log

    def execute(self, query, params=None, **kwargs):
        self._log.append(query)
        return self._conn.execute(query, params, **kwargs)

    def __getattr__(self, name):
        return getattr(self._conn, name)


def test_put_routed_is_one_statement_from_the_current_bindings(store, monkeypatch):
    store.declare_queue("ttl", message_ttl=5.0)
    store.bind("tasks", "rk", None, "ttl")
    store.bind("tasks", "rk", None, "plain")
    store.bind("tasks", "other", None, "elsewhere")
    sent: list = []
    real_run = store._run
    monkeypatch.setattr(store, "_run", lambda fn, idempotent=False: real_run(
        lambda conn: fn(_CountingConn(conn, sent)), idempotent))
    before = time.time()
    assert store.put_routed("tasks", "rk", NewMessage("", b"m", expires_at=before + 60)) == 2
    assert len(sent) == 1  # routing, both inserts and the NOTIFY: one round trip
    assert store.put_routed("tasks", "nobody", NewMessage("", b"lost")) == 0
    # A binding made by another store object counts at once: nothing is cached.
    other = PostgresStore(server.URL, {"schema": store.schema})
    try:
        other.bind("tasks", "rk", None, "late")
        other.unbind("tasks", "rk", "plain")
    finally:
        other.close()
    assert store.put_routed("tasks", "rk", NewMessage("", b"n")) == 2
    monkeypatch.undo()
    assert store.size("plain") == 1 and store.size("late") == 1 and store.size("ttl") == 2
    assert store.size("elsewhere") == 0
    with admin() as conn:
        rows = conn.execute(f'SELECT expires_at FROM "{store.schema}".messages'
                            " WHERE queue = 'ttl' ORDER BY id").fetchall()
    # The queue's message TTL caps the message's own expiry, as put does.
    assert [before + 5.0 <= r[0] <= time.time() + 5.0 for r in rows] == [True, True]


def test_put_routed_wakes_waiters_only_when_it_stored_something(store):
    store.bind("tasks", "rk", None, "q")
    waiter = store.waiter()
    try:
        waiter.wait(0.05)  # drain a start-up wake-up, if any
        assert store.put_routed("tasks", "nobody", NewMessage("", b"lost")) == 0
        assert waiter.wait(0.3) is False
        assert store.put_routed("tasks", "rk", NewMessage("", b"m")) == 1
        deadline = time.monotonic() + 10
        while not waiter.wait(0.5) and time.monotonic() < deadline:
            pass
        assert time.monotonic() < deadline
    finally:
        waiter.close()


def test_put_routed_uses_the_bindings_primary_key(store):
    store.bind("tasks", "rk", None, "q")
    params = {"exchange": "tasks", "routing_key": "rk", "lane": 1, "state": 0, "visible": 1.0,
              "payload": b"x", "expires": None, "now": 1.0, "channel": "c"}
    with admin() as conn, conn.transaction():
        conn.execute("SET LOCAL enable_seqscan = off")
        plan = "\n".join(r[0] for r in conn.execute(
            "EXPLAIN " + store.q(q.SQL_PUT_ROUTED), params))
    assert "Seq Scan on bindings" not in plan, plan


def test_unknown_role_names_the_fix():
    server.require_postgres()
    with pytest.raises(StoreAuthenticationError, match="refused user 'no_such_role_x'.*password"):
        PostgresStore(url_with(user="no_such_role_x"), {"schema": server.new_schema()})


def test_missing_database_names_the_fix():
    server.require_postgres()
    with pytest.raises(StoreLocationError, match="does not exist.*createdb"):
        PostgresStore(url_with(dbname="gorelay_no_such_db"), {"schema": server.new_schema()})


def test_unknown_host_names_the_fix():
    with pytest.raises(StoreLocationError, match="host 'no-such-host.invalid' is unknown"):
        PostgresStore(url_with(host="no-such-host.invalid"), {"schema": "gorelay"})


def test_refused_port_is_transient():
    # Nothing listens on port 1: the server may be starting, so Celery should retry.
    with pytest.raises(StoreUnavailable, match="server is running"):
        PostgresStore(url_with(host="127.0.0.1", port="1"), {"schema": "gorelay"})


def test_bad_options_are_rejected():
    with pytest.raises(InvalidOption, match="plain PostgreSQL name"):
        PostgresStore(server.URL, {"schema": "bad-name; drop"})
    with pytest.raises(InvalidOption, match="pool_size"):
        PostgresStore(server.URL, {"pool_size": "0"})
    with pytest.raises(InvalidOption, match="Unknown transport option"):
        Connection(f"gorelay+{server.URL}", transport_options={"scheme": "x"}).connect()


def test_user_without_create_privilege_is_told_what_to_grant(schema):
    role = f"gorelay_noprivs_{uuid.uuid4().hex[:8]}"
    with admin() as conn:
        conn.execute(f'CREATE ROLE "{role}" LOGIN')
    try:
        with pytest.raises(StorePermissionError, match="GRANT CREATE ON DATABASE"):
            PostgresStore(url_with(user=role), {"schema": schema})
        # The fix the message names: an admin creates the schema for the user.
        with admin() as conn:
            conn.execute(f'CREATE SCHEMA "{schema}" AUTHORIZATION "{role}"')
        s = PostgresStore(url_with(user=role), {"schema": schema})
        s.put(NewMessage("q", b"x"))
        assert s.size("q") == 1
        s.close()
    finally:
        with admin() as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            conn.execute(f'DROP ROLE "{role}"')


def test_newer_schema_through_kombu(schema):
    with admin() as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
        conn.execute(f'CREATE TABLE "{schema}".meta (key text PRIMARY KEY, value text NOT NULL)')
        conn.execute(f'INSERT INTO "{schema}".meta VALUES (%s, %s)', ("schema_version", "99"))
    with pytest.raises(SchemaVersionError, match="schema version 99"):
        Connection(server.make_url(schema)).connect()


# -- connection loss ------------------------------------------------------------
def app_name(store: PostgresStore) -> str:
    from psycopg.conninfo import conninfo_to_dict

    return str(conninfo_to_dict(store.conninfo)["application_name"])


def terminate(store: PostgresStore) -> int:
    app = app_name(store)
    with admin() as conn:
        # With a timeout it returns once the backends are gone (their FATAL sent).
        rows = conn.execute("SELECT pg_terminate_backend(pid, 10000) FROM pg_stat_activity"
                            " WHERE application_name = %s", (app,)).fetchall()
    return len(rows)


def test_store_and_waiter_reconnect_after_their_backends_are_terminated(store):
    store.put(NewMessage("q", b"before"))
    waiter = store.waiter()
    try:
        assert terminate(store) >= 2  # the pool's and the listener's
        store.put(NewMessage("q", b"after"))  # a fresh connection, no error
        assert store.size("q") == 2
        got = store.reserve(["q"], 10, "w", 30)
        assert [r.payload for r in got] == [b"before", b"after"]
        store.ack([r.id for r in got])
        # The listener comes back by itself; wake-ups from other processes flow again.
        publisher = PostgresStore(server.URL, {"schema": store.schema})
        try:
            deadline = time.monotonic() + 30
            woken = False
            while not woken and time.monotonic() < deadline:
                waiter.wait(0.1)  # drains the reconnect's own wake-up
                publisher.put(NewMessage("q", b"ping"))
                woken = waiter.wait(1.0)
            assert woken
        finally:
            publisher.close()
    finally:
        waiter.close()


def test_kombu_consumer_survives_terminated_backends(store):
    url = server.make_url(store.schema) + f"&application_name={app_name(store)}"
    queue = Queue("work", routing_key="work")
    got: list = []
    with Connection(url) as conn:
        consumer = Consumer(conn, [queue], callbacks=[lambda body, m: (got.append(body), m.ack())])
        with consumer:
            Producer(conn).publish("one", routing_key="work", declare=[queue])
            conn.drain_events(timeout=10)
            terminate(store)
            Producer(conn).publish("two", routing_key="work", declare=[queue])
            deadline = time.monotonic() + 30
            while len(got) < 2 and time.monotonic() < deadline:
                try:
                    conn.drain_events(timeout=1)
                except TimeoutError:
                    pass
                except conn.connection_errors:
                    pass  # one dropped connection surfaces here; the next call works
    assert got == ["one", "two"]


def test_connections_are_not_shared_across_fork(store):
    store.put(NewMessage("q", b"x"))
    pid = os.fork()
    if pid == 0:  # child: must open its own connections and see the data
        try:
            os._exit(0 if store.size("q") == 1 else 1)
        except BaseException:
            os._exit(2)
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 0
    assert store.size("q") == 1  # the parent's pool still works


def test_notify_wakes_a_waiter_of_another_store_object(store):
    waiter = store.waiter()
    other = PostgresStore(server.URL, {"schema": store.schema})
    try:
        assert waiter.wait(0.05) is False
        other.put(NewMessage("q", b"m"))
        deadline = time.monotonic() + 10
        while not waiter.wait(0.5) and time.monotonic() < deadline:
            pass
        assert time.monotonic() < deadline
    finally:
        other.close()
        waiter.close()

