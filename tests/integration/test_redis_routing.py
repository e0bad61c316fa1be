"""Redis put_routed in one script, and the wake-up rule it shares with put.

The ROUTE script derives each queue's keys itself (Lua), so these tests check
that it lands exactly where the Python side reads: odd queue names, routing
keys that need JSON escaping, ETA/TTL/expiry, and bindings changed between
publishes.  They also pin the wake-up rule (a put wakes only an empty queue or
for an ETA) and the multi-queue reserve that never returns short while ready
messages are left.
"""

from __future__ import annotations

import time

import pytest

from gorelay_kombu.errors import InvalidOption
from gorelay_kombu.priority import HIGH, LOW
from gorelay_kombu.storage import NewMessage
from tests import server_redis as server

pytest.importorskip("redis")

ODD_QUEUES = ["plain", "we{ir}d", "", "%", "%7B", "é-ü", "a b", "x}{y"]
ODD_KEYS = ["", "rk", 'quo"te', "back\\slash", "é", '", "', "[1]"]


@pytest.fixture(params=["server", "client"])
def store(request):
    s = server.make_store(publish_routing=request.param)
    yield s
    s.close()
    server.cleanup(s)


def _bodies(rows) -> list[bytes]:
    return [r.payload for r in rows]


def test_routes_into_odd_queue_names_and_routing_keys(store):
    for q in ODD_QUEUES:
        store.declare_queue(q)
        for rk in ODD_KEYS:
            store.bind("ex", rk, None, q)
    for rk in ODD_KEYS:
        assert store.put_routed("ex", rk, NewMessage("", rk.encode() or b"-")) == len(ODD_QUEUES)
    expected = [rk.encode() or b"-" for rk in ODD_KEYS]
    for q in ODD_QUEUES:
        assert store.size(q) == len(ODD_KEYS)
        rows = store.reserve([q], 100, "w", 30)
        assert _bodies(rows) == expected, q
        assert all(r.queue == q for r in rows)
        store.ack([r.id for r in rows])
        assert store.size(q) == 0


def test_only_exact_routing_keys_match(store):
    store.bind("ex", "a", None, "qa")
    store.bind("ex", "a.b", None, "qab")
    store.bind("ex", "ab", None, "qab2")
    store.bind("other", "a", None, "qother")
    assert store.put_routed("ex", "a", NewMessage("", b"m")) == 1
    assert store.put_routed("ex", "nobody", NewMessage("", b"m")) == 0
    assert store.put_routed("missing-exchange", "a", NewMessage("", b"m")) == 0
    assert [store.size(q) for q in ("qa", "qab", "qab2", "qother")] == [1, 0, 0, 0]


def test_follows_binding_changes_at_once(store):
    store.bind("ex", "rk", None, "one")
    assert store.put_routed("ex", "rk", NewMessage("", b"1")) == 1
    store.unbind("ex", "rk", "one")
    assert store.put_routed("ex", "rk", NewMessage("", b"2")) == 0
    store.bind("ex", "rk", None, "two")
    assert store.put_routed("ex", "rk", NewMessage("", b"3")) == 1
    store.delete_queue("two")
    assert store.put_routed("ex", "rk", NewMessage("", b"4")) == 0
    assert _bodies(store.reserve(["one"], 10, "w", 30)) == [b"1"]
    assert store.size("two") == 0


def test_lanes_eta_ttl_and_expiry_as_put(store):
    store.declare_queue("ttl", message_ttl=0.2)
    store.bind("ex", "rk", None, "ttl")
    store.bind("ex", "rk", None, "plain")
    now = time.time()
    store.put_routed("ex", "rk", NewMessage("", b"low", LOW))
    store.put_routed("ex", "rk", NewMessage("", b"high", HIGH))
    store.put_routed("ex", "rk", NewMessage("", b"eta", visible_at=now + 0.3))
    store.put_routed("ex", "rk", NewMessage("", b"gone", expires_at=now + 0.1))
    assert store.next_due() == pytest.approx(now + 0.3, abs=0.01)
    time.sleep(0.45)
    # lanes first (the due ETA message is normal); "ttl" dropped all of its messages
    assert _bodies(store.reserve(["plain"], 10, "w", 30)) == [b"high", b"eta", b"low"]
    assert _bodies(store.reserve(["ttl"], 10, "w", 30)) == []


def test_ids_are_the_queue_numbers_of_put(store):
    store.bind("ex", "rk", None, "q")
    store.put_routed("ex", "rk", NewMessage("", b"a"))
    [mid] = store.put_many([NewMessage("q", b"b")])
    rows = store.reserve(["q"], 10, "w", 30)
    assert [r.id for r in rows][1] == mid
    store.ack([r.id for r in rows])
    assert store.size("q") == 0 and store.reserve(["q"], 10, "w", 30) == []


def test_routed_queue_is_registered_for_next_due():
    first = server.make_store()
    other = server.make_store(prefix=first.key_prefix)
    try:
        first.bind("ex", "rk", None, "q")
        other.put_routed("ex", "rk", NewMessage("", b"eta", visible_at=time.time() + 30))
        fresh = server.make_store(prefix=first.key_prefix)
        assert fresh.next_due() is not None
        fresh.close()
    finally:
        other.close()
        first.close()
        server.cleanup(first)


def test_bad_publish_routing_is_rejected():
    with pytest.raises(InvalidOption, match="publish_routing"):
        server.make_store(publish_routing="cluster")


def _wakes(store, action) -> int:
    pubsub = server.admin().pubsub()
    pubsub.subscribe(store.channel)
    assert pubsub.get_message(timeout=2)["type"] == "subscribe"
    action()
    count = 0
    while (message := pubsub.get_message(timeout=0.2)) is not None:
        count += message["type"] == "message"
    pubsub.close()
    return count


def test_a_put_wakes_only_an_empty_queue_or_for_an_eta(store):
    store.bind("ex", "rk", None, "q")
    assert _wakes(store, lambda: store.put_routed("ex", "rk", NewMessage("", b"1"))) == 1
    assert _wakes(store, lambda: store.put_routed("ex", "rk", NewMessage("", b"2"))) == 0
    assert _wakes(store, lambda: store.put(NewMessage("q", b"3"))) == 0
    eta = NewMessage("", b"eta", visible_at=time.time() + 60)
    assert _wakes(store, lambda: store.put_routed("ex", "rk", eta)) == 1
    rows = store.reserve(["q"], 10, "w", 30)
    assert len(rows) == 3
    assert _wakes(store, lambda: store.put(NewMessage("q", b"4"))) == 1
    assert _wakes(store, lambda: store.release([rows[0].id], "w")) == 1


def test_multi_queue_reserve_never_returns_short_while_messages_are_ready(store):
    # Messages put between the probe and the lease (beyond the probed counts)
    # put into non-empty queues wake nobody: the reserve must lease them itself.
    store.put_many([NewMessage("a", b"a0"), NewMessage("b", b"b0")])
    other = server.make_store(prefix=store.key_prefix)
    real_batch = store._batch
    state = {"probes": 0}

    def racing_batch(calls):
        results = real_batch(calls)
        if state["probes"] == 0:  # right after the first probe
            state["probes"] += 1
            other.put_many([NewMessage("a", b"a1"), NewMessage("b", b"b1")])
        return results

    store._batch = racing_batch
    try:
        rows = store.reserve(["a", "b"], 10, "w", 30)
    finally:
        store._batch = real_batch
        other.close()
    assert sorted(_bodies(rows)) == [b"a0", b"a1", b"b0", b"b1"]
