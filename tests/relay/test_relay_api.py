"""The Relay API without workers: registration, enqueue checks, what lands in the store."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import time
from dataclasses import dataclass

import kombu
import pytest
from celery import Celery

from gorelay_kombu import GoRelayError, Relay
from gorelay_kombu.compat.recorder import flush_all
from gorelay_kombu.compat.relay_errors import (
    PayloadError,
    RelayError,
    TopicAlreadyRegistered,
    UnknownTopic,
)
from gorelay_kombu.errors import ConfigurationError
from gorelay_kombu.priority import HIGH, LOW, NORMAL


@dataclass
class EmailPayload:
    to: str
    body: str


def send_email(p: EmailPayload) -> None:
    pass


def stored(relay: Relay, queue: str = "celery") -> list[dict]:
    """Every message waiting in ``queue``, as a plain kombu consumer gets it."""
    out = []
    with kombu.Connection(relay.url) as conn:
        channel = conn.default_channel
        while (message := channel.basic_get(queue, no_ack=True)) is not None:
            out.append({"headers": message.headers, "body": message.decode(),
                        "priority": message.properties.get("priority")})
    return out


def lanes(relay: Relay) -> dict[int, int]:
    return {s.lane: s.ready + s.scheduled for s in relay.store.queue_stats()
            if s.queue == "celery" and s.ready + s.scheduled}


def test_importing_the_package_does_not_import_celery() -> None:
    code = ("import sys, gorelay_kombu; assert 'celery' not in sys.modules; "
            "from gorelay_kombu import Relay; print(Relay.__name__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "Relay", out.stderr


def test_a_topic_registered_twice_is_refused(make_relay) -> None:
    relay = make_relay()
    relay.register("email.send", send_email)
    with pytest.raises(TopicAlreadyRegistered, match="already registered"):
        relay.register("email.send", send_email)

    @relay.celery.task(name="plain.task", shared=False)
    def plain() -> None:
        pass

    with pytest.raises(TopicAlreadyRegistered, match="already has a task"):
        relay.register("plain.task", send_email)


def test_an_unknown_topic_is_refused_and_nothing_is_sent(make_relay) -> None:
    relay = make_relay()
    relay.register("email.send", send_email)
    with pytest.raises(UnknownTopic, match="'email.sned' is not registered.*email.send"):
        relay.enqueue("email.sned", EmailPayload("a", "b"))
    assert isinstance(UnknownTopic("x"), GoRelayError)


@pytest.mark.parametrize("payload", [
    {"to": "a", "body": "b"},  # a dict is not an EmailPayload
    EmailPayload(to=42, body="b"),  # type: ignore[arg-type]
    None,
])
def test_a_wrong_payload_fails_in_the_caller_and_nothing_is_stored(make_relay,
                                                                   payload) -> None:
    relay = make_relay()
    relay.register("email.send", send_email)
    with pytest.raises(PayloadError, match="enqueue\\('email.send'\\).*takes EmailPayload"):
        relay.enqueue("email.send", payload)
    assert stored(relay) == []


def test_the_message_is_a_plain_celery_task(make_relay) -> None:
    relay = make_relay()
    relay.register("email.send", send_email)
    task_id = relay.enqueue("email.send", EmailPayload("user@example.com", "Hi"))
    [message] = stored(relay)
    assert message["headers"]["task"] == "email.send"
    assert message["headers"]["id"] == task_id
    assert message["body"][0] == [{"to": "user@example.com", "body": "Hi"}]


def test_priorities_pick_lanes(make_relay) -> None:
    relay = make_relay()
    relay.register("email.send", send_email)
    relay.register("report.build", send_email, priority="low")
    for priority in ("high", "high", "normal", None, 0, 9):
        relay.enqueue("email.send", EmailPayload("a", "b"), priority=priority)
    relay.enqueue("report.build", EmailPayload("a", "b"))  # the topic's default lane
    assert lanes(relay) == {HIGH: 3, NORMAL: 2, LOW: 2}
    with pytest.raises(ConfigurationError, match="priority must be"):
        relay.enqueue("email.send", EmailPayload("a", "b"), priority="urgent")


def test_delay_and_schedule_set_the_eta(make_relay) -> None:
    relay = make_relay()
    relay.register("email.send", send_email)
    when = dt.datetime(2100, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)
    ids = [relay.schedule(when, "email.send", EmailPayload("a", "b")),
           relay.schedule(when.timestamp(), "email.send", EmailPayload("a", "b"))]
    before = time.time()
    ids.append(relay.enqueue("email.send", EmailPayload("a", "b"), delay=3600))
    assert stored(relay) == []  # none is visible yet
    assert lanes(relay) == {NORMAL: 3}
    flush_all()  # history shows each task's ETA, from its message
    etas = [relay.store.history().task(i).eta for i in ids]
    assert etas[:2] == [when.timestamp()] * 2
    assert before + 3600 <= etas[2] < when.timestamp()
    assert relay.store.next_due() == pytest.approx(etas[2])
    with pytest.raises(ConfigurationError, match="delay must be"):
        relay.enqueue("email.send", EmailPayload("a", "b"), delay=-1)
    with pytest.raises(ConfigurationError, match="when must be"):
        relay.schedule("tomorrow", "email.send", EmailPayload("a", "b"))


def test_an_idempotency_key_returns_the_first_task(make_relay) -> None:
    relay = make_relay()
    relay.register("email.send", send_email)
    relay.register("sms.send", send_email)
    first = relay.enqueue("email.send", EmailPayload("a", "b"), idempotency_key="welcome:42")
    again = relay.enqueue("email.send", EmailPayload("a", "b"), idempotency_key="welcome:42")
    other = relay.enqueue("sms.send", EmailPayload("a", "b"), idempotency_key="welcome:42")
    short = relay.enqueue("email.send", EmailPayload("a", "b"), idempotency_key="k",
                          idempotency_window=0.001)
    time.sleep(0.01)  # let the 1 ms window pass (no timing is asserted)
    after = relay.enqueue("email.send", EmailPayload("a", "b"), idempotency_key="k")
    assert first == again and other != first and after != short
    assert sorted(m["headers"]["id"] for m in stored(relay)) == sorted(
        [first, other, short, after])


def test_relay_on_an_existing_celery_app(tmp_path) -> None:
    app = Celery("shop", broker=f"gorelay+sqlite:///{tmp_path / 'shop.db'}",
                 set_as_current=False)
    relay = Relay(app=app)
    relay.register("email.send", send_email)
    assert relay.celery is app and "email.send" in app.tasks
    assert relay.conf is app.conf  # celery -A mod:relay treats the Relay as the app
    with pytest.raises(ConfigurationError, match="gorelay URL"):
        Relay(app=Celery("x", broker="redis://localhost", set_as_current=False))
    with pytest.raises(ConfigurationError, match="not both"):
        Relay("gorelay://", app=app)


def test_bad_registration_arguments(make_relay) -> None:
    relay = make_relay()
    with pytest.raises(ConfigurationError, match="RetryPolicy"):
        relay.register("a.b", send_email, retry=3)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="timeout"):
        relay.register("a.b", send_email, timeout=0)
    class Plain:
        pass

    with pytest.raises(PayloadError, match="not supported"):
        relay.register("a.b", send_email, Plain)
    assert "a.b" not in relay.topics  # nothing half-registered


def test_enable_dashboard_serves_it_until_shutdown(make_relay) -> None:
    try:
        from gorelay_kombu.dashboard import serve_in_thread  # noqa: F401
    except ImportError:
        with pytest.raises(RelayError, match="pip install"):
            make_relay().enable_dashboard(":8080")
        return
    import urllib.request

    relay = make_relay()
    server = relay.enable_dashboard("127.0.0.1:0")
    with urllib.request.urlopen(server.url, timeout=10) as response:
        assert response.status == 200
    with pytest.raises(RelayError, match="already enabled"):
        relay.enable_dashboard("127.0.0.1:0")
    relay.shutdown()
    with pytest.raises(OSError):
        urllib.request.urlopen(server.url, timeout=2)
