"""Relay with in-process workers (``relay.start()``): handlers, retries, dead tasks,
re-drive, time limits, priorities and shutdown, on a real SQLite store."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

import pytest
from accept_helpers import wait_for
from celery import current_task

from gorelay_kombu.compat.recorder import flush_all
from gorelay_kombu.compat.relay_errors import NotDeadError
from gorelay_kombu.retry import Exponential, Fixed

pytestmark = pytest.mark.timeout(60)


@dataclass
class EmailPayload:
    to: str
    body: str


def history_state(relay: Any, task_id: str) -> str | None:
    flush_all()
    record = relay.store.history().task(task_id)
    return None if record is None else record.state


def wait_state(relay: Any, task_id: str, state: str) -> None:
    wait_for(lambda: history_state(relay, task_id) == state, 20,
             f"task {task_id} to be {state} in history",
             lambda: f"state is {history_state(relay, task_id)}")


def test_the_issue_example_runs(make_relay) -> None:
    relay = make_relay()
    received: list[Any] = []

    def send_email(p: EmailPayload) -> None:
        received.append(p)

    relay.register("email.send", send_email, EmailPayload)
    relay.start()
    task_id = relay.enqueue("email.send", EmailPayload(to="user@example.com", body="Welcome!"))
    relay.celery.AsyncResult(task_id).get(timeout=20)
    assert received == [EmailPayload(to="user@example.com", body="Welcome!")]
    wait_state(relay, task_id, "SUCCESS")


def test_decorator_form_returns_the_handler_result(make_relay) -> None:
    relay = make_relay()

    @relay.register("math.double")
    def double(n: int) -> int:
        return n * 2

    assert double(4) == 8  # still a plain function
    relay.start(concurrency=1)
    assert relay.celery.AsyncResult(relay.enqueue("math.double", 21)).get(timeout=20) == 42


def test_failing_twice_then_succeeding_follows_the_policy(make_relay) -> None:
    relay = make_relay()
    policy = Exponential(base=0.05, jitter=0.5, seed=99, max_retries=5)
    attempts: list[tuple[int, Any]] = []

    @relay.register("flaky.call", retry=policy)
    def flaky(p: dict) -> str:
        request = current_task.request
        attempts.append((request.retries, getattr(request, "gorelay_retry_delay", None)))
        if request.retries < 2:
            raise ConnectionError("service down")
        return "done"

    relay.start(concurrency=1)
    task_id = relay.enqueue("flaky.call", {})
    assert relay.celery.AsyncResult(task_id).get(timeout=20) == "done"
    # The delay each retry was scheduled with is the policy's, exactly.
    assert attempts == [(0, None), (1, policy.delay(0)), (2, policy.delay(1))]
    wait_state(relay, task_id, "SUCCESS")
    events = [e.event for e in relay.store.history().events(task_id)]
    assert events.count("retried") == 2, events


def test_out_of_retries_is_dead_and_can_be_redriven(make_relay) -> None:
    relay = make_relay()
    broken = threading.Event()
    broken.set()
    runs: list[int] = []

    @relay.register("report.build", retry=Fixed(seconds=0.01, jitter=0, max_retries=2))
    def build(p: dict) -> str:
        runs.append(current_task.request.retries)
        if broken.is_set():
            raise RuntimeError("disk full")
        return "built"

    relay.start(concurrency=1)
    task_id = relay.enqueue("report.build", {"month": "2024-05"}, priority="low")
    with pytest.raises(RuntimeError, match="disk full"):
        relay.celery.AsyncResult(task_id).get(timeout=20)
    wait_state(relay, task_id, "DEAD")
    assert runs == [0, 1, 2]
    dead = relay.dead(task_id)
    assert dead is not None
    assert (dead.name, dead.args, dead.retries, dead.exc_type, dead.reason) == \
        ("report.build", [{"month": "2024-05"}], 2, "RuntimeError", "disk full")

    broken.clear()
    assert relay.retry(task_id) == task_id  # same task, retries from 0
    wait_state(relay, task_id, "SUCCESS")
    assert runs == [0, 1, 2, 0]
    assert relay.celery.AsyncResult(task_id).get(timeout=20) == "built"
    assert relay.dead(task_id) is None
    with pytest.raises(NotDeadError):
        relay.retry(task_id)


def test_an_exception_not_retried_fails_at_once(make_relay) -> None:
    relay = make_relay()
    runs: list[int] = []

    @relay.register("user.sync", dont_retry_on=KeyError)
    def sync(p: dict) -> None:
        runs.append(1)
        raise KeyError("no such user")

    relay.start(concurrency=1)
    task_id = relay.enqueue("user.sync", {})
    with pytest.raises(KeyError):
        relay.celery.AsyncResult(task_id).get(timeout=20)
    wait_state(relay, task_id, "FAILURE")  # not retried, so not "out of retries"
    assert runs == [1]
    assert relay.dead(task_id) is not None  # still re-drivable


def test_a_handler_over_its_timeout_fails(make_relay) -> None:
    relay = make_relay()

    @relay.register("cpu.spin", timeout=0.2, max_retries=0)
    def spin(p: dict) -> None:
        end = time.monotonic() + 30
        while time.monotonic() < end:
            pass

    relay.start(concurrency=1)
    task_id = relay.enqueue("cpu.spin", {})
    with pytest.raises(Exception) as info:
        relay.celery.AsyncResult(task_id).get(timeout=20)
    assert type(info.value).__name__ == "HandlerTimeout"
    assert "timeout of 0.2s" in str(info.value)


def test_backlog_drains_high_then_normal_then_low(make_relay) -> None:
    relay = make_relay(worker_prefetch_multiplier=1)
    order: list[str] = []

    @relay.register("lane.record")
    def record(tag: str) -> None:
        order.append(tag)

    for lane in ("low", "normal", "high"):  # published low first: FIFO would reverse it
        for i in range(4):
            relay.enqueue("lane.record", f"{lane}-{i}", priority=lane)
    relay.start(concurrency=1)
    wait_for(lambda: len(order) == 12, 20, "the backlog", lambda: str(order))
    assert order == [f"{lane}-{i}" for lane in ("high", "normal", "low") for i in range(4)]


def test_shutdown_finishes_running_work_and_returns_the_rest(make_relay) -> None:
    relay = make_relay(worker_prefetch_multiplier=4)
    started = threading.Event()
    finished: list[int] = []

    @relay.register("slow.job")
    def slow(n: int) -> None:
        started.set()
        time.sleep(0.5)
        finished.append(n)

    for n in range(4):
        relay.enqueue("slow.job", n)
    relay.start(concurrency=1)
    assert started.wait(20)
    assert relay.shutdown(timeout=20)
    assert finished == [0]  # the running one finished
    assert relay.store.size("celery") == 3  # the others went back, not lost
