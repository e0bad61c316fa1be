"""The store contract: every store (memory, SQLite, later PostgreSQL and Redis) passes it."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time

import pytest

from gorelay_kombu.priority import HIGH, LOW, NORMAL
from gorelay_kombu.storage import NewMessage, QueueStats, Store, open_store
from tests.conftest import cleanup, store_url


def put(store: Store, queue: str, body: str, lane: int = NORMAL, delay: float = 0.0) -> int:
    visible_at = time.time() + delay if delay else 0.0
    return store.put(NewMessage(queue, body.encode(), lane, visible_at))


def bodies(reserved) -> list[str]:
    return [r.payload.decode() for r in reserved]


def test_put_then_reserve_is_fifo(store):
    for i in range(5):
        put(store, "q", f"m{i}")
    got = store.reserve(["q"], 10, "w1", 30)
    assert bodies(got) == [f"m{i}" for i in range(5)]
    assert all(r.queue == "q" and r.deliveries == 1 for r in got)


def test_lanes_are_served_high_then_normal_then_low(store):
    put(store, "q", "low1", LOW)
    put(store, "q", "normal1", NORMAL)
    put(store, "q", "high1", HIGH)
    put(store, "q", "low2", LOW)
    put(store, "q", "high2", HIGH)
    got = store.reserve(["q"], 3, "w1", 30)
    assert bodies(got) == ["high1", "high2", "normal1"]
    assert bodies(store.reserve(["q"], 10, "w1", 30)) == ["low1", "low2"]


def test_lanes_decide_across_queues(store):
    put(store, "a", "a-normal", NORMAL)
    put(store, "b", "b-high", HIGH)
    put(store, "a", "a-low", LOW)
    got = store.reserve(["a", "b"], 2, "w1", 30)
    assert bodies(got) == ["b-high", "a-normal"]


def test_reserve_respects_limit_and_queue(store):
    for i in range(4):
        put(store, "q", f"m{i}")
    put(store, "other", "x")
    assert len(store.reserve(["q"], 3, "w1", 30)) == 3
    assert bodies(store.reserve(["q"], 3, "w1", 30)) == ["m3"]
    assert store.reserve(["q"], 3, "w1", 30) == []
    assert store.reserve(["q"], 0, "w1", 30) == []


def test_leased_messages_are_invisible_to_other_consumers(store):
    put(store, "q", "m")
    assert len(store.reserve(["q"], 1, "w1", 30)) == 1
    assert store.reserve(["q"], 1, "w2", 30) == []


def test_ack_deletes_for_good(store):
    mid = put(store, "q", "m")
    store.reserve(["q"], 1, "w1", 0.2)
    store.ack([mid])
    store.ack([mid])  # idempotent
    time.sleep(0.3)
    assert store.reserve(["q"], 1, "w2", 30) == []
    assert store.size("q") == 0


def test_release_makes_visible_again_in_place(store):
    first = put(store, "q", "first")
    put(store, "q", "second")
    store.reserve(["q"], 1, "w1", 30)
    store.release([first], "w1")
    got = store.reserve(["q"], 2, "w2", 30)
    assert bodies(got) == ["first", "second"]
    assert got[0].deliveries == 2


def test_release_by_another_owner_is_ignored(store):
    mid = put(store, "q", "m")
    store.reserve(["q"], 1, "w1", 30)
    store.release([mid], "intruder")
    assert store.reserve(["q"], 1, "w2", 30) == []


def test_expired_lease_is_delivered_again(store):
    put(store, "q", "m")
    store.reserve(["q"], 1, "dead-worker", 0.2)
    assert store.reserve(["q"], 1, "w2", 30) == []
    time.sleep(0.3)
    got = store.reserve(["q"], 1, "w2", 30)
    assert bodies(got) == ["m"] and got[0].deliveries == 2


def test_renew_keeps_the_lease(store):
    mid = put(store, "q", "m")
    store.reserve(["q"], 1, "w1", 1.0)
    for _ in range(4):  # 1.2 s in all, past the first lease
        time.sleep(0.3)
        assert store.renew("w1", 1.0, [mid]) == 1
    assert store.reserve(["q"], 1, "w2", 30) == []
    assert store.renew("nobody", 1.0, [mid]) == 0
    assert store.renew("w1", 1.0, []) == 0


def test_scheduled_message_is_invisible_until_due(store):
    put(store, "q", "later", delay=2.0)  # long enough for a loaded machine
    put(store, "q", "now")
    assert bodies(store.reserve(["q"], 10, "w1", 30)) == ["now"]
    assert store.size("q") == 1  # the scheduled one still waits in the queue
    due = store.next_due()
    assert due is not None and due > time.time()
    time.sleep(max(0.0, due - time.time()) + 0.05)
    assert bodies(store.reserve(["q"], 10, "w1", 30)) == ["later"]


def test_scheduled_message_is_never_redelivered_while_waiting(store):
    # kombu#337: an ETA longer than the visibility timeout must not duplicate.
    put(store, "q", "eta", delay=0.6)
    seen = []
    deadline = time.time() + 1.0
    while time.time() < deadline:
        got = store.reserve(["q"], 10, "w1", 0.1)  # leases shorter than the ETA
        seen.extend(bodies(got))
        store.ack([r.id for r in got])
        time.sleep(0.05)
    assert seen == ["eta"]


def test_next_due_tracks_leases(store):
    assert store.next_due() is None
    put(store, "q", "m")
    store.reserve(["q"], 1, "w1", 5)
    due = store.next_due()
    assert due is not None and 4 < due - time.time() <= 5.1


def test_dead_letter_is_kept_and_never_delivered(store):
    mid = put(store, "q", "poison")
    put(store, "q", "fine")
    store.reserve(["q"], 1, "w1", 30)
    store.dead_letter(mid, "undecodable")
    assert bodies(store.reserve(["q"], 10, "w1", 30)) == ["fine"]
    [(dead_id, reason, payload)] = store.dead_letters("q")
    assert (dead_id, reason, payload) == (mid, "undecodable", b"poison")
    assert store.size("q") == 0


def test_size_counts_waiting_not_leased(store):
    for i in range(3):
        put(store, "q", f"m{i}")
    store.reserve(["q"], 1, "w1", 30)
    assert store.size("q") == 2
    assert store.size("empty") == 0


def test_purge_removes_waiting_and_keeps_leased(store):
    leased = put(store, "q", "leased")
    store.reserve(["q"], 1, "w1", 30)
    put(store, "q", "a")
    put(store, "q", "b", delay=60)
    assert store.purge("q") == 2
    assert store.size("q") == 0
    store.release([leased], "w1")
    assert bodies(store.reserve(["q"], 10, "w1", 30)) == ["leased"]


def test_queue_declare_has_delete(store):
    assert not store.has_queue("q")
    store.declare_queue("q")
    store.declare_queue("q")
    assert store.has_queue("q")
    put(store, "q", "m")
    store.bind("ex", "rk", None, "q")
    store.delete_queue("q")
    assert not store.has_queue("q")
    assert store.size("q") == 0
    assert store.bindings("ex") == []


def test_put_many_is_one_batch(store):
    ids = store.put_many([NewMessage("a", b"1"), NewMessage("b", b"2")])
    assert len(ids) == 2 and ids[0] != ids[1]
    assert bodies(store.reserve(["a", "b"], 10, "w", 30)) == ["1", "2"]


def test_bindings_and_exchange_types_are_shared(store):
    store.declare_exchange("ev", "topic")
    store.declare_exchange("ev", "fanout")  # first type wins
    assert store.exchange_type("ev") == "topic"
    assert store.exchange_type("missing") is None
    store.bind("ev", "task.#", "^task\\..*$", "q1")
    store.bind("ev", "task.#", "^task\\..*$", "q1")  # idempotent
    store.bind("ev", "worker.*", None, "q2")
    assert sorted(store.bindings("ev")) == [
        ("task.#", "^task\\..*$", "q1"), ("worker.*", None, "q2"),
    ]
    store.unbind("ev", "task.#", "q1")
    assert store.bindings("ev") == [("worker.*", None, "q2")]


def test_key_value_with_expiry(store):
    assert store.kv_get("k") is None
    store.kv_set("k", b"v1")
    store.kv_set("k", b"v2")
    assert store.kv_get("k") == b"v2"
    store.kv_set("t", b"x", ttl=0.2)
    assert store.kv_get("t") == b"x"
    time.sleep(0.3)
    assert store.kv_get("t") is None
    store.kv_delete("k")
    store.kv_delete("k")
    assert store.kv_get("k") is None


def wait_until_woken(waiter, timeout: float) -> bool:
    """Waiters may return early without a wake-up (callers re-check the store)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if waiter.wait(deadline - time.monotonic()):
            return True
    return False


def test_waiter_wakes_on_put_and_on_wake(store):
    waiter = store.waiter()
    try:
        assert wait_until_woken(waiter, 0.2) is False  # nothing happened
        threading.Timer(0.05, lambda: put(store, "q", "m")).start()
        start = time.monotonic()
        assert wait_until_woken(waiter, 5) is True
        assert time.monotonic() - start < 4  # woken, not timed out
        threading.Timer(0.05, waiter.wake).start()
        assert wait_until_woken(waiter, 5) is True
    finally:
        waiter.close()


def test_competing_consumers_never_share_a_message(store):
    n = 300
    store.put_many([NewMessage("q", str(i).encode()) for i in range(n)])
    seen: list[str] = []
    lock = threading.Lock()

    def consume(owner: str) -> None:
        while True:
            got = store.reserve(["q"], 7, owner, 30)
            if not got:
                return
            with lock:
                seen.extend(bodies(got))
            store.ack([r.id for r in got])

    threads = [threading.Thread(target=consume, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(seen, key=int) == [str(i) for i in range(n)]


def test_message_ttl_drops_waiting_messages(store):
    store.declare_queue("pidbox", message_ttl=0.2)
    put(store, "pidbox", "stale")
    store.put(NewMessage("plain", b"own-expiry", expires_at=time.time() + 0.2))
    put(store, "plain", "forever")
    time.sleep(0.3)
    put(store, "pidbox", "fresh")
    assert bodies(store.reserve(["pidbox"], 10, "w", 30)) == ["fresh"]
    assert bodies(store.reserve(["plain"], 10, "w", 30)) == ["forever"]


def test_idle_queue_expires_with_its_messages_and_bindings(store):
    store.declare_queue("reply", expires=0.3)
    store.declare_queue("kept", expires=0.3)
    store.declare_queue("durable")
    store.bind("ex", "rk", None, "reply")
    put(store, "reply", "m")
    for _ in range(3):
        time.sleep(0.15)
        store.touch_queues(["kept"])
    assert store.expire_idle_queues() == ["reply"]
    assert not store.has_queue("reply") and store.size("reply") == 0
    assert store.bindings("ex") == []
    assert store.has_queue("kept") and store.has_queue("durable")


def test_concurrent_publishers_all_commit(store):
    # Publishers in many threads (a threads-pool worker sending subtasks) may
    # share commits, but each put returns only once its message is stored.
    errors: list[BaseException] = []
    ids: list[int] = []
    lock = threading.Lock()

    def publish(worker: int) -> None:
        try:
            for i in range(50):
                mid = put(store, "q", f"{worker}-{i}")
                with lock:
                    ids.append(mid)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=publish, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(set(ids)) == 400
    assert store.size("q") == 400


def test_put_routed_follows_direct_bindings(store):
    store.bind("tasks", "email", None, "mail-a")
    store.bind("tasks", "email", None, "mail-b")
    store.bind("tasks", "report", None, "reports")
    assert store.put_routed("tasks", "email", NewMessage("", b"hello", HIGH)) == 2
    assert store.put_routed("tasks", "nobody", NewMessage("", b"lost")) == 0
    assert bodies(store.reserve(["mail-a"], 10, "w", 30)) == ["hello"]
    [copy] = store.reserve(["mail-b"], 10, "w", 30)
    assert copy.payload == b"hello" and copy.lane == HIGH
    assert store.size("reports") == 0


# -- key/value: batch reads, counters, add-if-absent, expiry, notifications -------
def test_kv_mget_reads_many_keys_in_order(store):
    store.kv_set("a", b"1")
    store.kv_set("b", b"2")
    store.kv_set("gone", b"x", ttl=0.1)
    time.sleep(0.2)
    assert store.kv_mget(["b", "missing", "a", "gone", "a"]) == [b"2", None, b"1", None, b"1"]
    assert store.kv_mget([]) == []


def test_kv_incr_counts_from_zero_as_ascii_digits(store):
    assert store.kv_incr("n") == 1
    assert store.kv_incr("n", 5) == 6
    assert store.kv_incr("n", -2) == 4
    assert store.kv_get("n") == b"4"
    store.kv_set("preset", b"41")
    assert store.kv_incr("preset") == 42


def test_kv_incr_expiry_rules(store):
    assert store.kv_incr("t", ttl=0.5) == 1
    store.kv_set("r", b"5", ttl=0.5)
    assert store.kv_incr("t") == 2  # no ttl: the expiry is kept...
    assert store.kv_incr("r", ttl=30) == 6  # ...a ttl resets it
    time.sleep(0.6)
    assert store.kv_get("t") is None
    assert store.kv_get("r") == b"6"
    assert store.kv_incr("t") == 1  # an expired counter starts again from 0
    time.sleep(0.3)
    assert store.kv_get("t") == b"1"  # without a ttl the new counter does not expire


def test_kv_incr_from_many_threads_gives_each_value_once(store):
    seen: list[int] = []
    lock = threading.Lock()

    def count() -> None:
        for _ in range(25):
            value = store.kv_incr("hits")
            with lock:
                seen.append(value)

    threads = [threading.Thread(target=count) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(seen) == list(range(1, 201))
    assert store.kv_get("hits") == b"200"


def test_kv_add_stores_only_when_absent_or_expired(store):
    assert store.kv_add("lock", b"me", ttl=0.5) is None
    assert store.kv_add("lock", b"you") == b"me"  # left untouched
    assert store.kv_get("lock") == b"me"
    time.sleep(0.6)
    assert store.kv_add("lock", b"you") is None  # expired counts as absent
    assert store.kv_get("lock") == b"you"
    time.sleep(0.3)
    assert store.kv_get("lock") == b"you"  # stored without a ttl: no expiry


def test_kv_add_race_between_threads_has_one_winner(store):
    results: list[bytes | None] = []
    lock = threading.Lock()
    barrier = threading.Barrier(8)

    def add(i: int) -> None:
        barrier.wait()
        got = store.kv_add("once", f"t{i}".encode())
        with lock:
            results.append(got)

    threads = [threading.Thread(target=add, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winner = store.kv_get("once")
    assert results.count(None) == 1
    assert sorted(r for r in results if r is not None) == [winner] * 7


def test_kv_expire_sets_and_clears_expiry(store):
    store.kv_set("k", b"v")
    store.kv_expire("k", 0.5)
    store.kv_set("keep", b"v", ttl=0.5)
    store.kv_expire("keep", None)  # cleared
    store.kv_expire("absent", 10)  # no-op, creates nothing
    assert store.kv_get("absent") is None
    time.sleep(0.6)
    assert store.kv_get("k") is None
    assert store.kv_get("keep") == b"v"
    store.kv_expire("k", 10)  # expired counts as absent: nothing comes back
    assert store.kv_get("k") is None


def test_kv_purge_expired_deletes_only_expired_keys(store):
    store.kv_set("old1", b"x", ttl=0.1)
    store.kv_set("old2", b"x", ttl=0.1)
    store.kv_set("young", b"x", ttl=60)
    store.kv_set("forever", b"x")
    time.sleep(0.2)
    # 0 where the server deletes expired keys by itself (Redis)
    assert store.kv_purge_expired() in (0, 2)
    assert store.kv_purge_expired() == 0
    assert store.kv_mget(["young", "forever"]) == [b"x", b"x"]


def test_kv_waiter_wakes_on_notifying_set_only(store):
    waiter = store.kv_waiter()
    queue_waiter = store.waiter()
    try:
        store.kv_set("quiet", b"v")  # no notify: nobody is woken
        assert wait_until_woken(waiter, 0.2) is False
        threading.Timer(0.05, lambda: store.kv_set("result", b"done", notify=True)).start()
        assert wait_until_woken(waiter, 10) is True
        assert store.kv_get("result") == b"done"  # visible once woken
        assert wait_until_woken(queue_waiter, 0.2) is False  # results never wake consumers
        threading.Timer(0.05, waiter.wake).start()
        assert wait_until_woken(waiter, 10) is True
    finally:
        waiter.close()
        queue_waiter.close()


# -- inspection -----------------------------------------------------------------
def test_queue_stats_per_queue_and_lane(store):
    store.declare_queue("work")
    store.declare_queue("idle")
    before = time.time()
    for body, lane, delay in [("r1", NORMAL, 0), ("r2", NORMAL, 0), ("eta", NORMAL, 60),
                              ("urgent", HIGH, 0), ("low1", LOW, 0), ("low2", LOW, 0)]:
        put(store, "work", body, lane, delay)
    [urgent] = store.reserve(["work"], 1, "w", 30)
    store.dead_letter(urgent.id, "poison")
    assert bodies(store.reserve(["work"], 3, "w", 30)) == ["r1", "r2", "low1"]
    stats = store.queue_stats()
    assert [(s.queue, s.lane) for s in stats] == [
        ("idle", NORMAL), ("work", HIGH), ("work", NORMAL), ("work", LOW)]
    assert stats[0] == QueueStats("idle", NORMAL, 0, 0, 0, 0, None)
    high, normal, low = stats[1:]
    assert (high.ready, high.scheduled, high.leased, high.dead) == (0, 0, 0, 1)
    assert high.oldest_ready_at is None
    assert (normal.ready, normal.scheduled, normal.leased, normal.dead) == (0, 1, 2, 0)
    assert normal.oldest_ready_at is None
    assert (low.ready, low.scheduled, low.leased, low.dead) == (1, 0, 1, 0)
    assert low.oldest_ready_at is not None and before - 1 <= low.oldest_ready_at <= time.time()


def test_queue_stats_oldest_ready_and_due_messages(store):
    store.declare_queue("q")
    before = time.time()
    put(store, "q", "first")
    time.sleep(0.05)
    put(store, "q", "second")
    put(store, "q", "short-eta", delay=0.1)
    [s] = store.queue_stats()
    assert (s.queue, s.lane, s.ready, s.scheduled) == ("q", NORMAL, 2, 1)
    assert s.oldest_ready_at is not None and before - 1 <= s.oldest_ready_at < before + 0.04
    time.sleep(0.2)  # the ETA has come: ready, even before a reserve moved it
    [s] = store.queue_stats()
    assert (s.ready, s.scheduled, s.leased) == (3, 0, 0)


# -- key/value between processes (every store but memory) -------------------------
KV_CHILD = """
import json, sys
from gorelay_kombu.storage import open_store
store = open_store(sys.argv[1])
print("ready", flush=True)
sys.stdin.readline()  # start together
counted = [store.kv_incr("hits") for _ in range(int(sys.argv[2]))]
added = store.kv_add("once", sys.argv[3].encode())
store.kv_set("done-" + sys.argv[3], b"1", notify=True)
print(json.dumps({"counted": counted, "won": added is None}), flush=True)
store.close()
"""


@pytest.fixture
def shared_url(store_kind, tmp_path):
    if store_kind == "memory":
        pytest.skip("the memory store lives in one process")
    url = store_url(store_kind, tmp_path)
    yield url
    cleanup(store_kind, url)


def test_kv_incr_add_and_notify_between_processes(shared_url):
    store = open_store(shared_url)
    waiter = store.kv_waiter()  # before the children write anything
    procs = [subprocess.Popen([sys.executable, "-c", KV_CHILD, shared_url, "60", f"p{i}"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
             for i in range(3)]
    try:
        for p in procs:
            assert p.stdout is not None and p.stdout.readline().strip() == "ready"
        for p in procs:
            assert p.stdin is not None
            p.stdin.write("go\n")
            p.stdin.flush()
        # Woken by the children's notifying sets, not by a timeout.
        assert wait_until_woken(waiter, 60) is True
        results = [json.loads(p.communicate(timeout=120)[0].strip().splitlines()[-1])
                   for p in procs]
        counted = sorted(v for r in results for v in r["counted"])
        assert counted == list(range(1, 181))  # every value seen exactly once
        assert store.kv_get("hits") == b"180"
        assert sum(r["won"] for r in results) == 1
        assert store.kv_get("once") in {b"p0", b"p1", b"p2"}
        assert store.kv_mget([f"done-p{i}" for i in range(3)]) == [b"1"] * 3
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
        waiter.close()
        store.close()
