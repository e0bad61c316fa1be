"""The task-history contract: every store's ``history()`` passes it.

The spec is :mod:`gorelay_kombu.history.base` (its module and method
docstrings); each test below names the promise it checks.  Every time is an
explicit ``at`` (no clock, no sleeps), with fractions that a store rounding
floats (for example Lua's 14 significant digits) would lose.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest

from gorelay_kombu.history import (
    STATES,
    EventRecord,
    History,
    Page,
    TaskEvent,
    TaskRecord,
    WorkerBeat,
    WorkerRecord,
)
from gorelay_kombu.history.base import RUNTIME_BUCKETS

#: a minute boundary (epoch seconds, 2023-11-14): minute T0 // 60 starts at T0
T0 = 1_699_999_980.0
MINUTE = int(T0 // 60)


def ev(task_id: str, event: str, at: float, *, by: str | None = None,
       info: str | None = None, **fields: Any) -> TaskEvent:
    """A TaskEvent; ``by`` is the timeline's worker, keyword arguments are task fields."""
    return TaskEvent(task_id, event, at, fields, worker=by, info=info)


def zero_counts(**nonzero: int) -> dict[str, int]:
    counts = dict.fromkeys(STATES, 0)
    counts.update(nonzero)
    return counts


def ids(page) -> list[str]:
    return [t.task_id for t in page.items]


def get(history: History, task_id: str) -> TaskRecord:
    record = history.task(task_id)
    assert record is not None, f"task {task_id} was not recorded"
    return record


@pytest.fixture
def history(store) -> Iterator[History]:
    h = store.history()
    yield h
    h.close()


# -- recording: records, timelines, states -------------------------------------------

def test_empty_history_reads_empty(history):
    assert history.task("nope") is None
    assert history.events("nope") == []
    assert history.counts() == zero_counts()
    assert history.tasks() == Page([], False)
    assert history.names() == []
    assert history.throughput(0) == []
    assert history.workers() == []
    buckets, count, total = history.runtime_histogram()
    assert [le for le, _ in buckets] == [*RUNTIME_BUCKETS, float("inf")]
    assert all(n == 0 for _, n in buckets) and count == 0 and total == 0


def test_record_of_an_empty_batch_is_a_no_op(history):
    history.record([])
    assert history.counts() == zero_counts()
    assert history.tasks().items == []


def test_record_creates_the_task_with_every_field(history):
    at = T0 + 1.123456
    history.record([ev(
        "t1", "sent", at, name="shop.add", queue="celery", lane=2, eta=T0 + 30.5,
        args="(2, 3)", kwargs="{'x': 1}", parent_id="p1", root_id="r1", group_id="g1",
        retry_of="t0", attempt=0,
    )])
    assert history.task("t1") == TaskRecord(
        task_id="t1", state="PENDING", name="shop.add", queue="celery", lane=2,
        sent_at=at, received_at=None, started_at=None, finished_at=None, updated_at=at,
        eta=T0 + 30.5, args="(2, 3)", kwargs="{'x': 1}", result=None, exc_type=None,
        exc_message=None, traceback=None, worker=None, parent_id="p1", root_id="r1",
        group_id="g1", retry_of="t0", attempt=0, runtime=None, next_attempt_at=None,
    )
    record = get(history, "t1")
    assert isinstance(record.lane, int) and isinstance(record.attempt, int)
    assert isinstance(record.eta, float) and isinstance(record.updated_at, float)


def test_a_full_run_sets_every_timestamp_and_field(history):
    history.record([ev("t1", "sent", T0 + 1.25, name="shop.add", queue="celery", args="(1,)")])
    history.record([ev("t1", "received", T0 + 2.5, by="w1@host", info="redelivered")])
    history.record([ev("t1", "started", T0 + 3.75, by="w1@host", worker="w1@host")])
    history.record([ev("t1", "succeeded", T0 + 4.875, result="2", runtime=1.125)])
    record = get(history, "t1")
    assert record.state == "SUCCESS"
    assert (record.sent_at, record.received_at, record.started_at, record.finished_at) == (
        T0 + 1.25, T0 + 2.5, T0 + 3.75, T0 + 4.875)
    assert record.updated_at == T0 + 4.875
    assert (record.name, record.queue, record.args) == ("shop.add", "celery", "(1,)")
    assert (record.worker, record.result, record.runtime) == ("w1@host", "2", 1.125)
    assert isinstance(record.runtime, float)
    assert history.events("t1") == [
        EventRecord("t1", "sent", T0 + 1.25, None, None),
        EventRecord("t1", "received", T0 + 2.5, "w1@host", "redelivered"),
        EventRecord("t1", "started", T0 + 3.75, "w1@host", None),
        EventRecord("t1", "succeeded", T0 + 4.875, None, None),
    ]


@pytest.mark.parametrize("event, state", [
    ("sent", "PENDING"), ("received", "RECEIVED"), ("started", "STARTED"),
    ("retried", "RETRY"), ("succeeded", "SUCCESS"), ("failed", "FAILURE"),
    ("revoked", "REVOKED"), ("dead", "DEAD"),
])
def test_each_event_moves_to_its_state(history, event, state):
    history.record([ev("t1", event, T0)])
    assert get(history, "t1").state == state
    assert history.counts() == zero_counts(**{state: 1})


def test_state_is_the_latest_event_even_when_it_arrived_first(history):
    # the worker's "started" reaches the store before the producer's "sent"
    history.record([ev("t1", "started", T0 + 2, by="w1", worker="w1")])
    history.record([ev("t1", "sent", T0 + 1, name="shop.add", queue="celery", args="(1,)")])
    record = get(history, "t1")
    assert record.state == "STARTED"
    assert (record.sent_at, record.started_at, record.updated_at) == (T0 + 1, T0 + 2, T0 + 2)
    assert (record.name, record.queue, record.args, record.worker) == (
        "shop.add", "celery", "(1,)", "w1")
    assert history.counts() == zero_counts(STARTED=1)
    assert ids(history.tasks(state="STARTED")) == ["t1"]
    assert history.tasks(state="PENDING").items == []
    assert [e.event for e in history.events("t1")] == ["sent", "started"]


def test_out_of_order_inside_one_batch(history):
    history.record([
        ev("t1", "succeeded", T0 + 3, result="ok"),
        ev("t1", "sent", T0 + 1, name="shop.add"),
        ev("t1", "started", T0 + 2),
    ])
    record = get(history, "t1")
    assert (record.state, record.name, record.result) == ("SUCCESS", "shop.add", "ok")
    assert (record.sent_at, record.started_at, record.finished_at) == (T0 + 1, T0 + 2, T0 + 3)
    assert history.counts() == zero_counts(SUCCESS=1)
    assert [e.event for e in history.events("t1")] == ["sent", "started", "succeeded"]


def test_a_late_final_event_does_not_undo_a_newer_state(history):
    history.record([ev("t1", "started", T0 + 5)])
    history.record([ev("t1", "failed", T0 + 4, exc_type="KeyError")])
    record = get(history, "t1")
    assert record.state == "STARTED"
    assert record.exc_type == "KeyError"  # a field nobody newer set still merges in
    assert record.finished_at == T0 + 4 and record.updated_at == T0 + 5
    assert history.counts() == zero_counts(STARTED=1)


def test_ties_go_to_the_later_recorded_event(history):
    history.record([ev("a", "started", T0)])
    history.record([ev("a", "succeeded", T0)])
    history.record([ev("b", "succeeded", T0), ev("b", "started", T0)])
    assert get(history, "a").state == "SUCCESS"
    assert get(history, "b").state == "STARTED"
    assert history.counts() == zero_counts(SUCCESS=1, STARTED=1)
    # the timeline keeps arrival order among equal times
    assert [e.event for e in history.events("b")] == ["succeeded", "started"]


def test_timeline_is_ordered_by_at_then_arrival(history):
    history.record([ev("t1", "started", T0 + 3)])
    history.record([ev("t1", "sent", T0 + 1)])
    history.record([ev("t1", "retry-requested", T0 + 2, info="from the dashboard")])
    history.record([ev("t1", "received", T0 + 2)])
    events = history.events("t1")
    assert [(e.event, e.at) for e in events] == [
        ("sent", T0 + 1), ("retry-requested", T0 + 2), ("received", T0 + 2),
        ("started", T0 + 3)]
    assert events[1].info == "from the dashboard"
    assert all(e.task_id == "t1" for e in events)


def test_action_events_only_add_to_the_timeline(history):
    history.record([ev("t1", "failed", T0 + 1, exc_type="ValueError")])
    history.record([ev("t1", "retry-requested", T0 + 5, info="retried from the dashboard")])
    record = get(history, "t1")
    assert record.state == "FAILURE" and record.finished_at == T0 + 1
    assert record.updated_at == T0 + 5  # "updated_at the latest at seen"
    assert history.counts() == zero_counts(FAILURE=1)
    assert [(e.event, e.info) for e in history.events("t1")] == [
        ("failed", None), ("retry-requested", "retried from the dashboard")]


# -- field merging -------------------------------------------------------------------

def test_non_none_fields_overwrite_and_missing_ones_never_clear(history):
    history.record([ev("t1", "sent", T0 + 1, name="shop.add", queue="a", args="(1,)")])
    history.record([ev("t1", "received", T0 + 2, queue="b", args=None)])
    record = get(history, "t1")
    assert (record.name, record.queue, record.args) == ("shop.add", "b", "(1,)")


def test_an_older_event_never_overwrites_a_newer_field(history):
    history.record([ev("t1", "succeeded", T0 + 9, worker="w-new", result="new")])
    history.record([ev("t1", "started", T0 + 5, worker="w-old", runtime=0.5, result="old")])
    record = get(history, "t1")
    assert (record.worker, record.result) == ("w-new", "new")
    assert record.runtime == 0.5  # no newer event set it


def test_an_older_event_only_fills_missing_fields(history):
    # "an older event only fills fields that are still None": the late event at
    # T0+5 is older than the record (T0+9), so it keeps ``attempt`` as set at T0+1
    # and only adds ``exc_type``, which nobody had set.
    history.record([ev("t1", "started", T0 + 1, attempt=0)])
    history.record([ev("t1", "received", T0 + 9)])
    history.record([ev("t1", "retried", T0 + 5, attempt=1, exc_type="Timeout")])
    record = get(history, "t1")
    assert (record.attempt, record.exc_type, record.state) == (0, "Timeout", "RECEIVED")


def test_an_action_event_makes_the_record_newer(history):
    # updated_at counts every event, so a late worker event after a dashboard action
    # only fills what is missing
    history.record([ev("t1", "failed", T0 + 1, exc_type="KeyError", worker="w1")])
    history.record([ev("t1", "retry-requested", T0 + 5)])
    history.record([ev("t1", "failed", T0 + 3, exc_type="ValueError", runtime=0.5)])
    record = get(history, "t1")
    assert (record.exc_type, record.runtime, record.worker) == ("KeyError", 0.5, "w1")
    assert (record.state, record.finished_at, record.updated_at) == ("FAILURE", T0 + 3, T0 + 5)


#: late and early events of one task with clashing fields and equal times
_MIXED = [
    ev("x", "sent", T0 + 1, name="shop.add", queue="a", attempt=0, args="(1,)"),
    ev("x", "received", T0 + 6, by="w2", worker="w2", queue="b"),
    ev("x", "retried", T0 + 5.5, exc_type="Timeout", worker="w1", attempt=1),
    ev("x", "started", T0 + 6, by="w3", worker="w3", attempt=2),
    ev("x", "failed", T0 + 4, exc_type="KeyError", runtime=0.5, result="x", eta=T0 + 9),
    ev("x", "retry-requested", T0 + 6.5, info="from the dashboard"),
    ev("x", "succeeded", T0 + 6.25, result="ok", runtime=1.5),
    ev("x", "sent", T0 + 6.5, queue="c", lane=0),
]
_ORDERS = {"forward": list(range(8)), "backward": list(range(7, -1, -1)),
           "mixed": [4, 0, 6, 2, 7, 1, 5, 3], "pairs": [1, 0, 3, 2, 5, 4, 7, 6]}


@pytest.mark.parametrize("stored", [False, True], ids=["new", "stored"])
@pytest.mark.parametrize("order", list(_ORDERS))
def test_a_batch_merges_as_its_events_one_by_one(history, order, stored):
    # "A batch gives the same record as its events recorded one at a time", whatever
    # the record held before (stored: a task a worker already reported at T0 + 5)
    def events(task_id: str) -> list[TaskEvent]:
        return [TaskEvent(task_id, e.event, e.at, e.fields, e.worker, e.info)
                for e in (_MIXED[i] for i in _ORDERS[order])]

    for task_id in ("one", "batch"):
        if stored:
            history.record([ev(task_id, "started", T0 + 5, by="w1", worker="w1", attempt=0,
                               lane=2)])
    for e in events("one"):
        history.record([e])
    history.record(events("batch"))
    one, batch = get(history, "one"), get(history, "batch")
    assert replace(batch, task_id="one") == one
    assert [replace(e, task_id="one") for e in history.events("batch")] == \
        history.events("one")
    assert sum(history.counts().values()) == 2


def test_equal_times_let_the_later_recorded_field_win(history):
    history.record([ev("t1", "sent", T0, queue="a")])
    history.record([ev("t1", "sent", T0, queue="b")])
    assert get(history, "t1").queue == "b"


def test_retry_cycle(history):
    tid = "t1"
    steps = [
        (ev(tid, "sent", T0 + 1, name="shop.pay", queue="celery", attempt=0), "PENDING"),
        (ev(tid, "received", T0 + 2, by="w1"), "RECEIVED"),
        (ev(tid, "started", T0 + 3, by="w1", worker="w1"), "STARTED"),
        (ev(tid, "retried", T0 + 4, exc_type="Timeout", exc_message="slow",
            next_attempt_at=T0 + 10.5), "RETRY"),
        (ev(tid, "sent", T0 + 4.5, attempt=1, eta=T0 + 10.5), "PENDING"),
        (ev(tid, "received", T0 + 5, by="w2"), "RECEIVED"),
        (ev(tid, "started", T0 + 11, by="w2", worker="w2"), "STARTED"),
        (ev(tid, "succeeded", T0 + 12, result="'paid'", runtime=1.0), "SUCCESS"),
    ]
    for event, state in steps:
        history.record([event])
        assert get(history, tid).state == state
        assert history.counts() == zero_counts(**{state: 1})
        assert ids(history.tasks(state=state)) == [tid]
        assert sum(len(history.tasks(state=s).items) for s in STATES) == 1
    record = get(history, tid)
    assert (record.sent_at, record.received_at, record.started_at, record.finished_at) == (
        T0 + 4.5, T0 + 5, T0 + 11, T0 + 12)
    assert (record.attempt, record.worker, record.eta, record.next_attempt_at) == (
        1, "w2", T0 + 10.5, T0 + 10.5)
    assert (record.exc_type, record.result) == ("Timeout", "'paid'")
    assert [e.event for e in history.events(tid)] == [
        "sent", "received", "started", "retried", "sent", "received", "started", "succeeded"]


def test_finished_at_is_the_latest_final_event(history):
    history.record([ev("t1", "failed", T0 + 1)])
    history.record([ev("t1", "started", T0 + 2)])
    history.record([ev("t1", "dead", T0 + 3)])
    history.record([ev("t1", "revoked", T0 + 2.5)])
    record = get(history, "t1")
    assert (record.state, record.finished_at, record.started_at) == ("DEAD", T0 + 3, T0 + 2)
    assert history.counts() == zero_counts(DEAD=1)


# -- counts ----------------------------------------------------------------------------

def test_counts_are_exact_through_moves_deletes_and_prune(history):
    history.record([ev(f"t{i}", "sent", T0 + i) for i in range(6)])
    assert history.counts() == zero_counts(PENDING=6)
    history.record([ev("t0", "started", T0 + 10), ev("t1", "started", T0 + 10),
                    ev("t0", "succeeded", T0 + 11), ev("t2", "failed", T0 + 10)])
    assert history.counts() == zero_counts(PENDING=3, STARTED=1, SUCCESS=1, FAILURE=1)
    assert history.delete_tasks(["t1", "t3"]) == 2
    assert history.counts() == zero_counts(PENDING=2, SUCCESS=1, FAILURE=1)
    assert history.prune({"SUCCESS": T0 + 100, "FAILURE": T0 + 100}) == 2
    assert history.counts() == zero_counts(PENDING=2)
    history.record([ev("t4", "sent", T0 + 20)])  # a repeated event moves nothing
    assert history.counts() == zero_counts(PENDING=2)


# -- listing ---------------------------------------------------------------------------

def _listing_fixture(history: History) -> None:
    # one batch per task, recorded in neither id nor time order
    for e in [
        ev("bb04", "sent", T0 + 4, name="shop.mail", queue="celery", args="('aa0',)"),
        ev("aa02", "sent", T0 + 2, name="shop.add", queue="mail", args="(3, 4)", root_id="r1"),
        ev("cc05", "sent", T0 + 5, name="shop.add", queue="celery", args="(5, 6)"),
        ev("aa01", "sent", T0 + 1, name="shop.add", queue="celery", args="(1, 2)", root_id="r1"),
        ev("ab03", "sent", T0 + 3, name="shop.mail", queue="mail", kwargs="{'to': 'ann@x.org'}",
           root_id="r2"),
    ]:
        history.record([e])
    history.record([ev("aa01", "succeeded", T0 + 6), ev("ab03", "failed", T0 + 7),
                    ev("cc05", "succeeded", T0 + 8)])
    # first recorded, oldest first: bb04, aa02, cc05, aa01, ab03


def test_tasks_are_listed_in_the_order_first_recorded(history):
    _listing_fixture(history)
    assert ids(history.tasks()) == ["ab03", "aa01", "cc05", "aa02", "bb04"]
    assert ids(history.tasks(newest_first=False)) == ["bb04", "aa02", "cc05", "aa01", "ab03"]
    assert history.tasks().has_more is False
    # later events (newer or older, any state) leave a task where it is
    history.record([ev("bb04", "started", T0 + 20), ev("ab03", "retry-requested", T0 + 21),
                    ev("aa02", "sent", T0 - 5, queue="mail")])
    assert ids(history.tasks()) == ["ab03", "aa01", "cc05", "aa02", "bb04"]
    assert ids(history.tasks(state="STARTED")) == ["bb04"]


def test_a_batch_records_its_new_tasks_in_task_id_order(history):
    history.record([ev("m", "sent", T0 + 3), ev("z", "sent", T0 + 1), ev("a", "sent", T0 + 2),
                    ev("z", "started", T0 + 4)])
    history.record([ev("b", "sent", T0)])
    assert ids(history.tasks()) == ["b", "z", "m", "a"]
    assert ids(history.tasks(state="PENDING", newest_first=False)) == ["a", "m", "b"]


def test_tasks_filter_by_state_queue_name_and_root(history):
    _listing_fixture(history)
    assert ids(history.tasks(state="SUCCESS")) == ["aa01", "cc05"]
    assert ids(history.tasks(state="PENDING")) == ["aa02", "bb04"]
    assert ids(history.tasks(state="FAILURE")) == ["ab03"]
    assert history.tasks(state="STARTED").items == []
    assert ids(history.tasks(queue="mail")) == ["ab03", "aa02"]
    assert ids(history.tasks(name="shop.add")) == ["aa01", "cc05", "aa02"]
    assert ids(history.tasks(root_id="r1")) == ["aa01", "aa02"]
    assert history.tasks(queue="nowhere").items == []


def test_tasks_filters_combine(history):
    _listing_fixture(history)
    assert ids(history.tasks(state="SUCCESS", queue="celery")) == ["aa01", "cc05"]
    assert ids(history.tasks(state="PENDING", queue="celery")) == ["bb04"]
    assert ids(history.tasks(name="shop.add", queue="mail")) == ["aa02"]
    assert ids(history.tasks(name="shop.mail", root_id="r2", state="FAILURE")) == ["ab03"]
    assert history.tasks(name="shop.mail", state="SUCCESS").items == []
    assert ids(history.tasks(queue="celery", newest_first=False)) == ["bb04", "cc05", "aa01"]


def test_search_by_id_prefix_and_args_substring(history):
    _listing_fixture(history)
    assert ids(history.tasks(search="aa01")) == ["aa01"]
    assert ids(history.tasks(search="ab0")) == ["ab03"]
    # id prefix or args: "aa0" is a prefix of two ids and inside bb04's args
    assert ids(history.tasks(search="aa0")) == ["aa01", "aa02", "bb04"]
    assert ids(history.tasks(search="b03")) == []  # inside an id, not a prefix
    assert ids(history.tasks(search="(3, 4)")) == ["aa02"]
    assert ids(history.tasks(search="ann@x")) == ["ab03"]  # kwargs
    assert ids(history.tasks(search="5, 6", state="SUCCESS")) == ["cc05"]
    assert ids(history.tasks(search="5, 6", state="PENDING")) == []
    assert ids(history.tasks(search="aa", queue="mail")) == ["aa02"]
    assert history.tasks(search="no such thing").items == []


def test_search_text_is_data_not_syntax(history):
    history.record([ev("t1", "sent", T0, args="('100%_done',)"),
                    ev("t2", "sent", T0 + 1, args="('100 done',)"),
                    ev("t*3", "sent", T0 + 2, args="('x',)")])
    assert ids(history.tasks(search="100%_")) == ["t1"]
    assert ids(history.tasks(search="%")) == ["t1"]
    assert ids(history.tasks(search="t*")) == ["t*3"]
    assert ids(history.tasks(search="'; DROP TABLE x; --")) == []


def test_pagination(history):
    history.record([ev(f"t{i}", "sent", T0 + i, queue="q" if i % 2 else "p") for i in range(7)])
    first = history.tasks(limit=3)
    assert (ids(first), first.has_more) == (["t6", "t5", "t4"], True)
    second = history.tasks(limit=3, offset=3)
    assert (ids(second), second.has_more) == (["t3", "t2", "t1"], True)
    last = history.tasks(limit=3, offset=6)
    assert (ids(last), last.has_more) == (["t0"], False)
    assert history.tasks(limit=3, offset=7) == Page([], False)
    exact = history.tasks(limit=7)
    assert (len(exact.items), exact.has_more) == (7, False)
    oldest = history.tasks(limit=2, offset=1, newest_first=False)
    assert (ids(oldest), oldest.has_more) == (["t1", "t2"], True)
    odd = history.tasks(queue="q", limit=2, offset=1)  # t5, t3, t1 -> skip t5
    assert (ids(odd), odd.has_more) == (["t3", "t1"], False)


def test_names_are_distinct_and_sorted(history):
    history.record([ev("t1", "sent", T0, name="b.task"), ev("t2", "sent", T0, name="a.task"),
                    ev("t3", "sent", T0, name="b.task"), ev("t4", "sent", T0)])
    assert history.names() == ["a.task", "b.task"]


# -- counters: throughput and runtimes ---------------------------------------------------

def test_throughput_per_minute(history):
    history.record([
        ev("a", "succeeded", T0 - 1),         # minute before `since`: left out
        ev("b", "succeeded", T0 + 0.5),
        ev("c", "succeeded", T0 + 59.9),
        ev("d", "failed", T0 + 30),
        ev("e", "dead", T0 + 31),
        ev("f", "started", T0 + 61),          # minute +1 has neither: left out
        ev("g", "revoked", T0 + 62),          # revoked is neither
        ev("h", "failed", T0 + 125),
        ev("i", "succeeded", T0 + 179.25),
    ])
    assert history.throughput(T0) == [(MINUTE, 2, 2), (MINUTE + 2, 1, 1)]
    assert history.throughput(T0 - 60) == [
        (MINUTE - 1, 1, 0), (MINUTE, 2, 2), (MINUTE + 2, 1, 1)]
    assert history.throughput(T0 + 180) == []
    assert all(isinstance(v, int) for row in history.throughput(T0) for v in row)


def test_throughput_counts_each_final_event_of_a_retried_task(history):
    history.record([ev("t1", "failed", T0 + 1)])
    history.record([ev("t1", "started", T0 + 2), ev("t1", "succeeded", T0 + 3)])
    assert history.throughput(T0) == [(MINUTE, 1, 1)]


def test_runtime_histogram_is_cumulative(history):
    runtimes = [0.003, 0.01, 0.02, 0.25, 0.7, 100.0]
    history.record([ev(f"t{i}", "succeeded" if i % 2 else "failed", T0 + i, runtime=r)
                    for i, r in enumerate(runtimes)])
    history.record([ev("t9", "started", T0 + 9)])  # no runtime: not counted
    buckets, count, total = history.runtime_histogram()
    expected = [sum(1 for r in runtimes if r <= le) for le in RUNTIME_BUCKETS] + [6]
    assert buckets == list(zip([*RUNTIME_BUCKETS, float("inf")], expected, strict=True))
    assert expected[:3] == [1, 2, 3]  # bounds are inclusive ("le")
    assert count == 6 and total == pytest.approx(sum(runtimes))


# -- workers ---------------------------------------------------------------------------

def test_heartbeat_upserts_and_adds_up(history):
    history.heartbeat([WorkerBeat("w1@host", T0 + 1.5, pid=11, pool="prefork", concurrency=4,
                                  queues=("celery", "mail"), started_at=T0, done=3, failed=1)])
    history.heartbeat([WorkerBeat("w1@host", T0 + 2.5, done=2),
                       WorkerBeat("w1@host", T0 + 3.5, concurrency=8, failed=2)])
    assert history.workers() == [WorkerRecord(
        hostname="w1@host", pid=11, pool="prefork", concurrency=8, queues=("celery", "mail"),
        started_at=T0, last_seen=T0 + 3.5, done=5, failed=3, stopped=False)]
    history.heartbeat([WorkerBeat("w1@host", T0 + 4.5, stopped=True)])
    [worker] = history.workers()
    assert (worker.stopped, worker.last_seen, worker.done) == (True, T0 + 4.5, 5)
    # a beat that only carries counts (stopped=None) leaves "stopped" as stored
    history.heartbeat([WorkerBeat("w1@host", T0 + 5, done=1)])
    [worker] = history.workers()
    assert (worker.stopped, worker.last_seen, worker.done) == (True, T0 + 5, 6)
    history.heartbeat([WorkerBeat("w1@host", T0 + 9, pid=12, started_at=T0 + 8,
                                  stopped=False)])
    [worker] = history.workers()
    assert (worker.stopped, worker.pid, worker.started_at) == (False, 12, T0 + 8)


def test_workers_sorted_with_defaults(history):
    history.heartbeat([WorkerBeat("b@host", T0), WorkerBeat("a@host", T0 + 1, queues=("q",))])
    assert history.workers() == [
        WorkerRecord("a@host", None, None, None, ("q",), None, T0 + 1, 0, 0, False),
        WorkerRecord("b@host", None, None, None, (), None, T0, 0, 0, False),
    ]


def test_forget_workers(history):
    history.heartbeat([WorkerBeat("old", T0, done=5), WorkerBeat("edge", T0 + 10),
                       WorkerBeat("new", T0 + 20)])
    assert history.forget_workers(T0 + 10) == 1  # strictly before
    assert [w.hostname for w in history.workers()] == ["edge", "new"]
    assert history.forget_workers(T0 + 10) == 0
    history.heartbeat([WorkerBeat("old", T0 + 30, done=1)])  # comes back: fresh counters
    assert [(w.hostname, w.done) for w in history.workers()] == [
        ("edge", 0), ("new", 0), ("old", 1)]


# -- deleting --------------------------------------------------------------------------

def test_delete_tasks(history):
    history.record([ev("t1", "sent", T0, name="n", queue="q", root_id="r", args="(1,)"),
                    ev("t2", "sent", T0 + 1, name="n", queue="q"),
                    ev("t1", "succeeded", T0 + 2)])
    assert history.delete_tasks(["t1", "missing"]) == 1
    assert history.task("t1") is None and history.events("t1") == []
    assert ids(history.tasks()) == ["t2"]
    for kwargs in ({"state": "SUCCESS"}, {"queue": "q"}, {"name": "n"}, {"root_id": "r"},
                   {"search": "t1"}, {"search": "(1,)"}):
        assert "t1" not in ids(history.tasks(**kwargs)), kwargs
    assert history.counts() == zero_counts(PENDING=1)
    assert history.delete_tasks(["t1"]) == 0
    assert history.delete_tasks([]) == 0
    # a deleted id recorded again starts a fresh record
    history.record([ev("t1", "sent", T0 + 5)])
    record = get(history, "t1")
    assert (record.state, record.name, record.finished_at) == ("PENDING", None, None)
    assert [e.event for e in history.events("t1")] == ["sent"]


def test_prune_by_state_cutoffs(history):
    history.record([
        ev("s-old", "succeeded", T0 + 1), ev("s-edge", "succeeded", T0 + 10),
        ev("s-new", "succeeded", T0 + 20), ev("f-old", "failed", T0 + 1),
        ev("f-new", "failed", T0 + 20), ev("p-old", "sent", T0 + 1),
        ev("st-old", "started", T0 + 1),
    ])
    assert history.prune({"SUCCESS": T0 + 10, "FAILURE": T0 + 5, "STARTED": T0 + 2}) == 3
    left = set(ids(history.tasks()))
    assert left == {"s-edge", "s-new", "f-new", "p-old"}  # updated_at == cutoff stays
    assert history.task("s-old") is None and history.events("s-old") == []
    assert history.counts() == zero_counts(SUCCESS=2, FAILURE=1, PENDING=1)
    assert history.prune({"SUCCESS": T0 + 10}) == 0
    assert history.prune({}) == 0


def test_prune_uses_updated_at(history):
    history.record([ev("t1", "succeeded", T0 + 1)])
    history.record([ev("t1", "retry-requested", T0 + 50)])
    assert history.prune({"SUCCESS": T0 + 10}) == 0
    assert history.prune({"SUCCESS": T0 + 51}) == 1


def test_prune_respects_limit(history):
    history.record([ev(f"t{i}", "succeeded", T0 + i) for i in range(5)])
    history.record([ev("keep", "succeeded", T0 + 100)])
    assert history.prune({"SUCCESS": T0 + 50}, limit=2) == 2
    assert history.prune({"SUCCESS": T0 + 50}, limit=2) == 2
    assert history.prune({"SUCCESS": T0 + 50}, limit=2) == 1
    assert history.prune({"SUCCESS": T0 + 50}, limit=2) == 0
    assert ids(history.tasks()) == ["keep"]
    assert history.counts() == zero_counts(SUCCESS=1)


# -- sharing ---------------------------------------------------------------------------

def test_two_history_objects_share_one_store(store):
    first, second = store.history(), store.history()
    try:
        first.record([ev("t1", "sent", T0, name="shop.add")])
        second.record([ev("t1", "started", T0 + 1)])
        second.heartbeat([WorkerBeat("w1", T0, done=1)])
        first.heartbeat([WorkerBeat("w1", T0 + 1, done=1)])
        for h in (first, second):
            assert get(h, "t1").state == "STARTED"
            assert h.counts() == zero_counts(STARTED=1)
            assert h.names() == ["shop.add"]
            assert [(w.hostname, w.done) for w in h.workers()] == [("w1", 2)]
        assert second.delete_tasks(["t1"]) == 1
        assert first.task("t1") is None
    finally:
        first.close()
        second.close()
