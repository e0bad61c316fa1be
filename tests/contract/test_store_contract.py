"""The store contract: every store (memory, SQLite, later PostgreSQL and Redis) passes it."""

from __future__ import annotations

import threading
import time

from gorelay_kombu.priority import HIGH, LOW, NORMAL
from gorelay_kombu.storage import NewMessage, Store


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
    put(store, "q", "later", delay=0.5)
    put(store, "q", "now")
    assert bodies(store.reserve(["q"], 10, "w1", 30)) == ["now"]
    assert store.size("q") == 1  # the scheduled one still waits in the queue
    due = store.next_due()
    assert due is not None and due > time.time()
    time.sleep(0.6)
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
