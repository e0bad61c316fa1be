"""Redis restarted under load: producers and consumers reconnect by themselves,
and with AOF (``appendfsync always``) no publish that returned is lost.

A private redis-server (see :mod:`tests.redis_private`) is SIGKILLed once and
stopped with ``SHUTDOWN NOSAVE`` once while two producers and two consumers run
on their original kombu connections (no reconnect code in the test: a failed
call raises a connection error, the next one works again).

Delivery is at least once, as the contract allows, and duplicates are
counted, not forbidden: a publish whose script ran but whose reply was lost
to the kill is retried and stored twice; an ack lost with the connection
leaves its message to be delivered again once its lease expires.
"""

from __future__ import annotations

import collections
import threading
import time
import uuid

import pytest
from kombu import Connection, Consumer, Exchange, Producer, Queue

from tests.redis_private import PrivateRedis

pytest.importorskip("redis")

RETRY_POLICY = {"max_retries": 200, "interval_start": 0.05, "interval_step": 0.05,
                "interval_max": 0.2}


@pytest.fixture
def private_redis(tmp_path, request):
    server = PrivateRedis(tmp_path)
    request.addfinalizer(server.stop)
    server.start()
    return server


def test_restart_under_load_loses_nothing_published_and_consumers_resume(private_redis):
    url = f"gorelay+{private_redis.url(0)}?key_prefix=restart-{uuid.uuid4().hex[:8]}:"
    exchange = Exchange("restart-x", type="direct")
    queue = Queue("restart-q", exchange, routing_key="rk")
    lock = threading.Lock()
    attempted: set[str] = set()
    returned: list[str] = []
    consumed: list[str] = []
    consumed_at: list[float] = []
    errors: collections.Counter[str] = collections.Counter()
    producing, consuming = threading.Event(), threading.Event()
    producing.set()
    consuming.set()
    connections: list[Connection] = []

    def connect(**options) -> Connection:
        conn = Connection(url, transport_options={"visibility_timeout": 3, **options})
        conn.connect()
        connections.append(conn)
        return conn

    setup = connect()
    queue(setup.channel()).declare()

    def produce(name: str, kombu_retry: bool) -> None:
        conn = connect()
        producer = Producer(conn.channel(), exchange=exchange, routing_key="rk",
                            serializer="json")
        i = 0
        while producing.is_set():
            body = f"{name}-{i}"
            i += 1
            attempted.add(body)
            while True:  # one publish, retried until it returns
                try:
                    if kombu_retry:
                        producer.publish(body, retry=True, retry_policy=RETRY_POLICY)
                    else:
                        producer.publish(body, retry=False)
                    break
                except conn.connection_errors as exc:
                    errors[f"publish: {type(exc).__name__}"] += 1
                    time.sleep(0.05)
            with lock:
                returned.append(body)
            time.sleep(0.001)

    def consume() -> None:
        # polling_interval 30: after a restart only the waiter's own
        # re-subscription (or a publish it then hears) can wake this consumer.
        conn = connect(polling_interval=30)

        def on_message(body, message) -> None:
            with lock:
                consumed.append(body)
                consumed_at.append(time.monotonic())
            message.ack()

        with Consumer(conn.channel(), queues=[queue], callbacks=[on_message],
                      prefetch_count=20, accept=["json"]):
            while consuming.is_set():
                try:
                    conn.drain_events(timeout=2)
                except TimeoutError:
                    pass
                except conn.connection_errors as exc:
                    errors[f"consume: {type(exc).__name__}"] += 1
                    time.sleep(0.05)

    threads = [threading.Thread(target=produce, args=("manual", False), daemon=True),
               threading.Thread(target=produce, args=("kombu", True), daemon=True),
               threading.Thread(target=consume, daemon=True),
               threading.Thread(target=consume, daemon=True)]
    try:
        for t in threads:
            t.start()
        time.sleep(1.5)
        before_kill = len(returned)
        private_redis.restart("kill")
        time.sleep(1.5)
        private_redis.restart("shutdown")
        restarted_at = time.monotonic()
        time.sleep(1.5)
        producing.clear()
        for t in threads[:2]:
            t.join(30)
        assert not any(t.is_alive() for t in threads[:2]), "a producer hangs"
        published = set(returned)
        assert before_kill > 0 and len(published) > before_kill, (before_kill, len(published))

        deadline = time.monotonic() + 30  # expired leases of lost acks come back after 3 s
        while time.monotonic() < deadline:
            with lock:
                if published <= set(consumed):
                    break
            time.sleep(0.1)
        with lock:
            seen = collections.Counter(consumed)
            lost = published - set(seen)
            resumed = sum(t > restarted_at for t in consumed_at)
        assert not lost, f"{len(lost)} returned publishes never consumed, e.g. {sorted(lost)[:5]}"
        assert set(seen) <= attempted, "consumed a message nobody published"
        assert resumed > 0, "no consumer delivered anything after the second restart"

        # Idle consumers wake on a publish again (pub/sub re-subscribed), well
        # before their 30 s polling interval.
        count = len(consumed)
        probe = connect()
        start = time.monotonic()
        Producer(probe.channel(), exchange=exchange, routing_key="rk",
                 serializer="json").publish("probe")
        while len(consumed) == count and time.monotonic() - start < 10:
            time.sleep(0.005)
        assert consumed[-1:] == ["probe"]
        assert time.monotonic() - start < 2.0

        duplicates = sum(n - 1 for n in seen.values())
        print(f"\nrestart test: {len(published)} publishes returned, {len(consumed)} "
              f"deliveries, {duplicates} duplicates (at least once), errors seen: "
              f"{dict(errors)}, restarts: {private_redis.restarts}")
        assert private_redis.restarts == 2
    finally:
        producing.clear()
        consuming.clear()
        for t in threads:
            t.join(5)
        for conn in connections:
            try:
                conn.release()
            except Exception:  # noqa: BLE001 - teardown on a possibly dead server
                pass
