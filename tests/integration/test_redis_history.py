"""Redis-specific promises of the task history and queue_stats: one hash tag, exact
counters kept by the scripts, listings that walk an index in chunks."""

from __future__ import annotations

import time

import pytest

from gorelay_kombu.history import TaskEvent, WorkerBeat
from gorelay_kombu.priority import HIGH, LOW, NORMAL
from gorelay_kombu.storage import NewMessage
from tests import server_redis as server

pytest.importorskip("redis")

T0 = 1_699_999_980.0


@pytest.fixture
def store():
    s = server.make_store()
    yield s
    s.close()
    server.cleanup(s)


def _keys(store) -> list[str]:
    return sorted(k.decode() for k in server.admin().scan_iter(match=f"{store.key_prefix}*"))


def test_every_history_key_shares_one_hash_tag(store):
    from redis.crc import key_slot

    history = store.history()
    history.record([
        TaskEvent("t{1}", "sent", T0, {"name": "n", "queue": "q{x}", "root_id": "r"}),
        TaskEvent("t{1}", "succeeded", T0 + 1, {"runtime": 0.5}),
    ])
    history.heartbeat([WorkerBeat("w{1}", T0)])
    keys = _keys(store)
    assert keys and all(k.startswith(store.key_prefix + "{%h}:") for k in keys)
    assert {key_slot(k.encode()) for k in keys} == {key_slot(b"%h")}


def _rebuilt(store, queues):
    """queue_stats after dropping every counter hash (as an older release left them)."""
    admin = server.admin()
    for q in queues:
        admin.delete(store._keys(q)[15])
    return store.queue_stats()


def test_queue_stats_counters_match_a_rebuild_after_every_kind_of_move(store):
    now = time.time()
    store.declare_queue("a")
    store.declare_queue("b", message_ttl=3600)
    store.queue_stats()  # the counters are exact from here on; the scripts keep them so
    ids = store.put_many(
        [NewMessage("a", f"a{i}".encode(), lane=(HIGH, NORMAL, LOW)[i % 3]) for i in range(12)]
        + [NewMessage("a", b"eta", lane=LOW, visible_at=now + 3600),
           NewMessage("a", b"eta-past", visible_at=now - 1),
           NewMessage("b", b"gone", expires_at=now - 1),
           NewMessage("b", b"eta-dead", lane=HIGH, visible_at=now + 3600),
           NewMessage("b", b"b1", lane=HIGH)])
    leased = store.reserve(["a"], 5, "w1", 30)
    store.ack([leased[0].id])
    store.release([leased[1].id], "w1")
    store.dead_letter(leased[2].id, "poison")
    store.dead_letter(ids[15], "poison")          # a scheduled message dies
    store.reserve(["a"], 2, "short", 0.0)         # leases that expire at once...
    store.reserve(["b"], 1, "w2", 30)
    store.ack([ids[12]])                          # ...and a scheduled one is acked
    store.put(NewMessage("b", b"soon", visible_at=time.time() + 0.01))
    time.sleep(0.05)
    stats = store.queue_stats()                   # the leases and the ETA come back here
    assert stats == _rebuilt(store, ["a", "b"])
    assert sum(s.leased for s in stats) == 3 and sum(s.dead for s in stats) == 2
    store.purge("a")
    store.ack([ids[6]])                           # a dead message is acked
    stats = store.queue_stats()
    assert stats == _rebuilt(store, ["a", "b"])
    store.delete_queue("a")
    assert {s.queue for s in store.queue_stats()} == {"b"}


def test_listing_walks_an_index_across_chunks(store):
    history = store.history()
    n = 1000
    history.record([TaskEvent(f"t{i:04d}", "sent", T0 + i,
                              {"queue": "odd" if i % 2 else "even", "args": f"({i},)"})
                    for i in range(n)])
    history.record([TaskEvent(f"t{i:04d}", "succeeded", T0 + n + i) for i in range(0, n, 3)])
    succeeded_odd = [f"t{i:04d}" for i in range(n) if i % 3 == 0 and i % 2][::-1]
    page = history.tasks(state="SUCCESS", queue="odd", offset=100, limit=50)
    assert [t.task_id for t in page.items] == succeeded_odd[100:150] and page.has_more
    page = history.tasks(state="SUCCESS", queue="odd", offset=150, limit=50)
    assert [t.task_id for t in page.items] == succeeded_odd[150:] and not page.has_more
    sevens = [i for i in range(n) if i % 10 == 7]  # listed in the order first recorded
    page = history.tasks(search="7,)", newest_first=False, limit=1000)
    assert [t.task_id for t in page.items] == [f"t{i:04d}" for i in sevens]
    assert history.counts()["SUCCESS"] == len(range(0, n, 3))
