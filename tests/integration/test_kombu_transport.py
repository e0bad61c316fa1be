"""The transport through kombu.Connection, on every store."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import pytest
from kombu import Consumer, Exchange, Producer, Queue

import gorelay_kombu  # noqa: F401  (registers the scheme for bare kombu)
from gorelay_kombu.storage import NewMessage


def drain(conn, queues, n, *, ack=True, timeout=5.0, prefetch=None):
    """Consume ``n`` messages; returns (bodies, messages)."""
    got, messages = [], []

    def on_message(body, message):
        got.append(body)
        messages.append(message)
        if ack:
            message.ack()

    with Consumer(conn, queues, callbacks=[on_message], prefetch_count=prefetch):
        deadline = time.monotonic() + timeout
        while len(got) < n:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                conn.drain_events(timeout=remaining)
            except TimeoutError:
                break
    return got, messages


def nothing_left(conn, queue, wait=0.3) -> bool:
    got, _ = drain(conn, [queue], 1, timeout=wait)
    return got == []


def publish(conn, queue, bodies, **kwargs):
    producer = Producer(conn)
    for body in bodies:
        producer.publish(body, exchange=queue.exchange, routing_key=queue.routing_key,
                         declare=[queue], **kwargs)


@pytest.fixture
def queue():
    return Queue("work", Exchange("work", "direct"), routing_key="work")


def test_publish_consume_ack(connect, queue):
    conn = connect()
    publish(conn, queue, [{"n": i} for i in range(20)])
    got, _ = drain(conn, [queue], 20)
    assert got == [{"n": i} for i in range(20)]
    assert conn.default_channel.queue_declare("work", passive=True).message_count == 0
    assert nothing_left(connect(), queue)


def test_passive_declare_counts_and_missing_queue_errors(connect, queue):
    conn = connect()
    publish(conn, queue, ["a", "b", "c"])
    assert conn.default_channel.queue_declare("work", passive=True).message_count == 3
    with pytest.raises(conn.channel_errors):
        conn.default_channel.queue_declare("never-declared", passive=True)


def test_reject_drops_and_requeue_redelivers(connect, queue):
    conn = connect()
    publish(conn, queue, ["drop", "again"])
    _, messages = drain(conn, [queue], 2, ack=False)
    messages[0].reject()
    messages[1].requeue()
    got, messages = drain(conn, [queue], 2, ack=False, timeout=1)
    assert got == ["again"]
    assert messages[0].delivery_info.get("redelivered") is True
    messages[0].ack()
    assert nothing_left(conn, queue)


def test_unacked_messages_return_when_the_consumer_closes(connect, queue):
    first = connect()
    publish(first, queue, ["x", "y"])
    got, _ = drain(first, [queue], 2, ack=False)
    assert got == ["x", "y"]
    first.release()
    got, _ = drain(connect(), [queue], 2)
    assert got == ["x", "y"]


def test_priorities_run_lane_by_lane(connect, queue):
    conn = connect()
    producer = Producer(conn)
    for i in range(3):
        for priority in (9, None, 0, 7, 4, 2):
            producer.publish({"p": priority, "i": i}, exchange=queue.exchange,
                             routing_key="work", declare=[queue], priority=priority)
    got, _ = drain(conn, [queue], 18, prefetch=1)
    lanes = ["high" if b["p"] in (0, 2) else "low" if b["p"] in (7, 9) else "normal"
             for b in got]
    assert lanes == ["high"] * 6 + ["normal"] * 6 + ["low"] * 6
    # FIFO inside a lane
    assert [b["i"] for b in got[:6]] == [0, 0, 1, 1, 2, 2]


def test_eta_message_is_invisible_until_due(connect, queue):
    conn = connect(visibility_timeout=0.2)
    eta = datetime.now(timezone.utc) + timedelta(seconds=0.8)
    publish(conn, queue, ["later"], headers={"eta": eta.isoformat()})
    publish(conn, queue, ["now"])
    got, _ = drain(conn, [queue], 2, timeout=0.4)
    assert got == ["now"]
    got, _ = drain(conn, [queue], 1, timeout=3)
    assert got == ["later"]
    assert datetime.now(timezone.utc) >= eta
    assert nothing_left(conn, queue, wait=0.5)  # not redelivered past the visibility timeout


def test_lease_renewal_prevents_a_second_delivery(connect, queue):
    holder = connect(visibility_timeout=1.0)  # renewed every third of a second
    publish(holder, queue, ["long task"])
    _, messages = drain(holder, [queue], 1, ack=False)
    other = connect(visibility_timeout=1.0)
    assert nothing_left(other, queue, wait=2.5)  # two and a half lease lengths
    messages[0].ack()
    time.sleep(0.1)
    assert nothing_left(other, queue, wait=0.5)


def test_fanout_between_connections(connect):
    exchange = Exchange("broadcast", "fanout")
    q1, q2 = Queue("listener-1", exchange), Queue("listener-2", exchange)
    c1, c2 = connect(), connect()
    q1(c1.default_channel).declare()
    q2(c2.default_channel).declare()
    publisher = connect()
    Producer(publisher).publish("hello all", exchange=exchange, routing_key="")
    assert drain(c1, [q1], 1)[0] == ["hello all"]
    assert drain(c2, [q2], 1)[0] == ["hello all"]


def test_topic_from_a_connection_that_never_declared_the_binding(connect):
    exchange = Exchange("events", "topic")
    listener = connect()
    q = Queue("task-events", exchange, routing_key="task.#")
    q(listener.default_channel).declare()
    publisher = connect()  # knows nothing of the binding
    producer = Producer(publisher)
    producer.publish("succeeded", exchange="events", routing_key="task.succeeded")
    producer.publish("heartbeat", exchange="events", routing_key="worker.heartbeat")
    got, _ = drain(listener, [q], 2, timeout=1)
    assert got == ["succeeded"]


def test_many_queues_on_one_channel(connect):
    qa, qb = Queue("a"), Queue("b")
    conn = connect()
    producer = Producer(conn)
    producer.publish("to a", routing_key="a", declare=[qa])
    producer.publish("to b", routing_key="b", declare=[qb])
    got, _ = drain(conn, [qa, qb], 2)
    assert sorted(got) == ["to a", "to b"]


def test_purge_empties_the_queue(connect, queue):
    conn = connect()
    publish(conn, queue, list(range(7)))
    assert queue(conn.default_channel).purge() == 7
    assert nothing_left(conn, queue)


def test_poison_message_is_dead_lettered_and_the_rest_flows(connect, queue):
    conn = connect()
    publish(conn, queue, ["before"])
    store = conn.transport.store
    store.put(NewMessage("work", b"{not json"))
    store.put(NewMessage("work", b'{"properties": {"delivery_tag": "t", "body_encoding":'
                                 b' "base64"}, "body": "***not base64***"}'))
    publish(conn, queue, ["after"])
    got, _ = drain(conn, [queue], 2)
    assert got == ["before", "after"]
    dead = store.dead_letters("work")
    assert len(dead) == 2
    assert all(reason.startswith("undecodable message") for _, reason, _ in dead)


def test_basic_get_leases_and_acks(connect, queue):
    conn = connect()
    publish(conn, queue, ["one"])
    simple = conn.SimpleQueue(queue)
    message = simple.get(timeout=2)
    assert message.payload == "one"
    message.ack()
    simple.close()
    assert nothing_left(conn, queue)


def test_priority_zero_is_not_treated_as_unset(connect, queue):
    conn = connect()
    producer = Producer(conn)
    producer.publish("normal", routing_key="work", declare=[queue], priority=None)
    producer.publish("urgent", routing_key="work", declare=[queue], priority=0)
    assert drain(conn, [queue], 2)[0] == ["urgent", "normal"]


def test_queue_message_ttl_and_expires_arguments(connect):
    # Celery declares its pidbox and event queues with these (x-message-ttl, x-expires).
    conn = connect()
    ttl_queue = Queue("control", Exchange("control", "fanout"), message_ttl=0.2)
    publish(conn, ttl_queue, ["stale command"])
    time.sleep(0.3)
    assert nothing_left(conn, ttl_queue)
    store = conn.transport.store
    gone = Queue("reply", Exchange("reply", "direct"), routing_key="reply", expires=0.2)
    gone(conn.default_channel).declare()
    time.sleep(0.3)
    assert "reply" in store.expire_idle_queues()
    assert not store.has_queue("reply")


def test_message_expiration_property(connect, queue):
    conn = connect()
    publish(conn, queue, ["short-lived"], expiration=0.2)
    publish(conn, queue, ["lasting"])
    time.sleep(0.3)
    assert drain(conn, [queue], 2, timeout=0.5)[0] == ["lasting"]


def test_expired_control_queue_gets_no_broadcast_and_comes_back_empty(connect):
    # Celery's pidbox queue has x-expires: after its worker is gone (and no
    # other consumer ran to expire it), a broadcast must not be kept for it,
    # and the worker's next start must not replay old commands.
    exchange = Exchange("celery.pidbox", "fanout")
    pidbox = Queue("w1.celery.pidbox", exchange, expires=0.3)
    worker = connect()
    pidbox(worker.default_channel).declare()
    worker.release()
    time.sleep(0.5)
    client = connect()
    Producer(client).publish({"method": "shutdown"}, exchange=exchange, routing_key="")
    restarted = connect()
    assert nothing_left(restarted, pidbox, wait=0.5)
