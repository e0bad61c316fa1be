"""Redis-specific promises: hash-tagged keys, atomic scripts across processes, clear errors."""

from __future__ import annotations

import multiprocessing
import threading
import time
import uuid

import pytest

from gorelay_kombu.errors import (
    InvalidOption,
    StoreAuthenticationError,
    StoreKeyConflict,
    StoreUnavailable,
)
from gorelay_kombu.priority import HIGH, LOW
from gorelay_kombu.storage import NewMessage, open_store
from tests import server_redis as server

pytest.importorskip("redis")


@pytest.fixture
def store():
    s = server.make_store()
    yield s
    s.close()
    server.cleanup(s)


def _keys(store) -> list[str]:
    return sorted(k.decode() for k in server.admin().scan_iter(match=f"{store.key_prefix}*"))


def _tag_of(key: str) -> str:
    start = key.index("{")
    return key[start + 1:key.index("}", start)]


def test_every_queue_key_carries_the_queue_hash_tag(store):
    from redis.crc import key_slot

    queues = ["plain", "we{ir}d", "", "%"]
    store.declare_exchange("ex", "direct")
    for q in queues:
        store.declare_queue(q, message_ttl=60, expires=60)
        store.bind("ex", "rk", None, q)
        now = time.time()
        store.put_many([
            NewMessage(q, b"ready", HIGH), NewMessage(q, b"low", LOW),
            NewMessage(q, b"eta", visible_at=now + 60),
            NewMessage(q, b"expiring", expires_at=now + 60),
        ])
        [first, *_] = store.reserve([q], 2, "w", 30)
        store.dead_letter(first.id, "poison")
    store.kv_set("result", b"v", ttl=60)
    keys = _keys(store)
    tags = {_tag_of(k) for k in keys if k.startswith(store.key_prefix + "{")}
    assert tags == {"plain", "we%7Bir%7Dd", "%00", "%25", "%"}
    for tag in tags:
        slots = {key_slot(k.encode()) for k in keys if k.startswith(f"{store.key_prefix}{{{tag}}}")}
        assert slots == {key_slot(tag.encode())}, tag
    others = [k for k in keys if not k.startswith(store.key_prefix + "{")]
    assert others == [f"{store.key_prefix}kv:result"]
    assert all(k.startswith(store.key_prefix) for k in keys)


def test_delete_queue_leaves_only_its_sequence_behind(store):
    store.declare_queue("gone")
    store.bind("ex", "rk", None, "gone")
    store.put(NewMessage("gone", b"m"))
    store.delete_queue("gone")
    left = [k for k in _keys(store) if _tag_of(k) == "gone"]
    assert left == [f"{store.key_prefix}{{gone}}:seq"]
    assert 0 < server.admin().ttl(left[0]) <= 86400
    # ids never repeat after the queue is created again
    old = store.put(NewMessage("gone", b"again"))
    store.delete_queue("gone")
    assert store.put(NewMessage("gone", b"third")) > old


def _consume(prefix: str, store, results) -> None:
    # Runs in a forked child: the inherited store must open its own connections.
    seen = []
    while True:
        got = store.reserve(["q", "r"], 9, f"proc-{prefix}", 30)
        if not got:
            break
        seen.extend(r.payload.decode() for r in got)
        store.ack([r.id for r in got])
    results.put(seen)


def test_scripts_are_atomic_between_processes(store):
    n = 2000
    store.put_many([NewMessage("q" if i % 3 else "r", str(i).encode(), lane=i % 3)
                    for i in range(n)])
    ctx = multiprocessing.get_context("fork")
    results = ctx.Queue()
    procs = [ctx.Process(target=_consume, args=(str(i), store, results)) for i in range(4)]
    for p in procs:
        p.start()
    seen = [body for _ in procs for body in results.get(timeout=120)]
    for p in procs:
        p.join(timeout=30)
        assert p.exitcode == 0
    assert len(seen) == n
    assert sorted(seen, key=int) == [str(i) for i in range(n)]
    assert store.size("q") == store.size("r") == 0


def test_a_key_of_the_wrong_type_under_the_prefix_is_a_clear_error(store):
    server.admin().set(f"{store.key_prefix}{{q}}:r1", "not ours")
    with pytest.raises(StoreKeyConflict) as err:
        store.put(NewMessage("q", b"m"))
    assert "key_prefix" in str(err.value) and store.key_prefix in str(err.value)
    with pytest.raises(StoreKeyConflict):
        store.reserve(["q"], 1, "w", 30)


def test_wrong_password_is_a_clear_error():
    # A user/password pair the server does not know.  (A bare ":password@" cannot be
    # tested here: the test server's default user has no password and accepts any.)
    server._check()
    host = server.URL.split("://", 1)[1].rsplit("@", 1)[-1]
    url = f"redis://nobody-{uuid.uuid4().hex[:6]}:wrong@{host}"
    with pytest.raises(StoreAuthenticationError) as err:
        server.make_store(url=url)
    assert "password" in str(err.value) and "gorelay+redis://" in str(err.value)


def test_unreachable_server_is_transient_and_names_the_fix():
    with pytest.raises(StoreUnavailable) as err:
        server.make_store(url="redis://127.0.0.1:1/15", socket_connect_timeout=0.5)
    assert "127.0.0.1:1" in str(err.value) and "redis-server" in str(err.value)


def test_bad_key_prefix_is_rejected():
    server._check()
    for prefix in ("", "a{b}:", "x*"):
        with pytest.raises(InvalidOption):
            server.make_store(prefix)


def test_url_query_options_reach_the_store():
    url = server.make_url()
    try:
        s = open_store(url)
        assert s.key_prefix == url.rsplit("key_prefix=", 1)[1]
        s.close()
    finally:
        server.cleanup(url)


def test_scripts_unknown_to_the_server_are_loaded_on_demand(store):
    from gorelay_kombu.storage.redis import _Lua

    script = _Lua(f"return ARGV[1] -- {uuid.uuid4().hex}")  # never seen by this server
    assert store._eval(script, [], ["one"]) == b"one"
    fresh = _Lua(f"return ARGV[1] -- {uuid.uuid4().hex}")
    assert store._batch([(fresh, [], ["a"]), ("PING",), (fresh, [], ["b"])]) == [b"a", True, b"b"]


def _kill_clients(name: str) -> int:
    admin = server.admin()
    killed = 0
    for client in admin.client_list():
        if client.get("name") == name:
            admin.client_kill_filter(_id=client["id"])
            killed += 1
    return killed


def test_reconnects_after_its_connections_are_killed(store):
    waiter = store.waiter()
    try:
        store.put(NewMessage("q", b"before"))
        assert waiter.wait(5)
        waiter.drain()
        assert _kill_clients(store.client_name) >= 2  # the pool and the subscription
        store.put(NewMessage("q", b"after"))  # redis-py reconnects on the next call
        assert [r.payload for r in store.reserve(["q"], 10, "w", 30)] == [b"before", b"after"]
        # the waiter re-subscribes by itself and wakes on a later put
        # (the first wake-up may be the one it sends after reconnecting)
        deadline = time.monotonic() + 10
        woken = False
        timers: list[threading.Timer] = []
        while not woken and time.monotonic() < deadline:
            waiter.drain()
            timers.append(threading.Timer(0.05, lambda: store.put(NewMessage("q", b"x"))))
            timers[-1].start()
            woken = waiter.wait(1.0)
        for timer in timers:
            timer.join()
        assert woken
    finally:
        waiter.close()


def test_waiter_fileno_is_readable_after_a_put_from_another_store(store):
    import select

    other = server.make_store(store.key_prefix)
    waiter = store.waiter()
    try:
        fd = waiter.fileno()
        assert select.select([fd], [], [], 0.1)[0] == []
        other.put(NewMessage("q", b"m"))
        assert select.select([fd], [], [], 5)[0] == [fd]
        waiter.drain()
        assert select.select([fd], [], [], 0)[0] == []
    finally:
        waiter.close()
        other.close()


def test_wrong_bare_password_and_missing_password_are_clear_errors(tmp_path):
    from tests.redis_private import PrivateRedis

    private = PrivateRedis(tmp_path, password="s3cret")
    private.start()
    try:
        with pytest.raises(StoreAuthenticationError) as err:
            open_store(f"gorelay+redis://:wrong@127.0.0.1:{private.port}/0", {"key_prefix": "pw:"})
        assert "password" in str(err.value)
        with pytest.raises(StoreAuthenticationError):
            open_store(f"gorelay+redis://127.0.0.1:{private.port}/0", {"key_prefix": "pw:"})
        good = open_store(f"gorelay+redis://:s3cret@127.0.0.1:{private.port}/0",
                          {"key_prefix": "pw:"})
        good.put(NewMessage("q", b"ok"))
        assert good.size("q") == 1
        good.close()
    finally:
        private.stop()
