"""The result backend, task history and worker registry with real workers, on every store.

One prefork worker per store kind and xdist process (``results`` fixture),
broker and backend on the same store URL (``results_app``).
"""

from __future__ import annotations

import os
import sys
import time
import uuid
from pathlib import Path

import pytest
from accept_helpers import HERE, Proc, Worker, wait_for
from celery import chain, chord, group
from celery.exceptions import ChordError

from tests.conftest import STORE_KINDS, cleanup, store_url

pytestmark = pytest.mark.acceptance

#: the stores a worker in another process can share (not the in-process memory store)
KINDS = [k for k in STORE_KINDS if k != "memory"]


class ResultsEnv:
    """A store URL, its worker processes and a client app in the test process."""

    def __init__(self, kind: str, directory: Path) -> None:
        self.kind = kind
        self.dir = directory
        self.url = store_url(kind, directory)
        self.procs: list[Proc] = []
        import results_app

        self.app = results_app.make_app(self.url)

    def environ(self) -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            [str(HERE)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
        env["PYTHONUNBUFFERED"] = "1"
        env["GORELAY_RESULTS_URL"] = self.url
        env["GORELAY_RESULTS_DIR"] = str(self.dir)
        return env

    def worker(self, name: str, pool: str = "prefork", concurrency: int = 3,
               queues: str = "celery", env: dict[str, str] | None = None) -> Worker:
        nodename = f"{name}-{uuid.uuid4().hex[:8]}@results"
        argv = [sys.executable, "-m", "celery", "-A", "results_app", "worker", "-n", nodename,
                "-P", pool, "-c", str(concurrency), "-Q", queues, "-l", "INFO",
                "--without-gossip", "--without-mingle", "--without-heartbeat"]
        worker = Worker(nodename, nodename, argv, {**self.environ(), **(env or {})}, self.dir,
                        self.dir / f"worker-{name}.log")
        self.procs.append(worker)
        return worker.wait_ready()

    @property
    def history(self):
        return self.app.backend.store.history()

    def events(self, task_id: str) -> list[str]:
        return [e.event for e in self.history.events(task_id)]

    def diag(self) -> str:
        return "\n".join(p.describe() for p in self.procs)

    def close(self) -> None:
        for p in reversed(self.procs):
            p.stop()
        self.app.close()
        if self.kind != "sqlite":
            cleanup(self.kind, self.url)


# one xdist process per store kind runs that kind's tests, so each kind starts one worker
@pytest.fixture(scope="session", params=[
    pytest.param(kind, marks=pytest.mark.xdist_group(f"results-{kind}")) for kind in KINDS])
def results(request, tmp_path_factory):
    env = ResultsEnv(request.param, tmp_path_factory.mktemp(f"results-{request.param}"))
    try:
        env.shared_worker = env.worker("shared")
        yield env
    finally:
        env.close()


def sig(app, name, *args):
    return app.signature(f"results.{name}", args=args)


@pytest.mark.timeout(120)
def test_canvas_chain_group_chord(results) -> None:
    app = results.app
    assert app.send_task("results.add", (2, 3)).get(timeout=30) == 5
    assert chain(sig(app, "add", 1, 2), sig(app, "mul", 10))().get(timeout=30) == 30
    assert group(sig(app, "add", i, i) for i in range(10))().get(timeout=30) == \
        [2 * i for i in range(10)]
    assert chord((sig(app, "add", i, 1) for i in range(8)), sig(app, "tsum"))().get(
        timeout=30) == sum(range(1, 9))
    nested = chain(sig(app, "add", 1, 1),
                   chord([sig(app, "mul", 3), sig(app, "mul", 4)], sig(app, "tsum")),
                   sig(app, "mul", 2))
    assert nested().get(timeout=30) == (2 * 3 + 2 * 4) * 2, results.diag()


@pytest.mark.timeout(120)
def test_chord_with_a_failing_header_task_fails_with_the_cause(results) -> None:
    import results_app

    app = results.app
    result = chord([sig(app, "add", 1, 1), sig(app, "decline", "order-7")],
                   sig(app, "tsum"))()
    with pytest.raises(results_app.PaymentDeclined):  # get() re-raises the header's error
        result.get(timeout=30)
    body = app.AsyncResult(result.id)
    wait_for(lambda: body.state == "FAILURE", 30, "the chord body to fail", results.diag)
    assert isinstance(body.result, ChordError) and "PaymentDeclined" in str(body.result)


@pytest.mark.timeout(120)
def test_states_and_exceptions_round_trip(results) -> None:
    import results_app

    app = results.app
    failed = app.send_task("results.decline", ("order-1",))
    with pytest.raises(results_app.PaymentDeclined) as info:
        failed.get(timeout=30)
    assert info.value.args == ("order-1", "card expired")
    assert failed.state == "FAILURE" and "PaymentDeclined" in failed.traceback

    slow = app.send_task("results.sleep", (1.5,))
    wait_for(lambda: slow.state == "STARTED", 30, "STARTED (task_track_started)",
             results.diag)
    assert slow.get(timeout=30) == 1.5 and slow.state == "SUCCESS"
    assert slow.name == "results.sleep"  # result_extended

    unknown = app.AsyncResult(str(uuid.uuid4()))
    assert unknown.state == "PENDING"

    slow.forget()
    assert app.AsyncResult(slow.id).state == "PENDING"

    revoked = app.send_task("results.add", (1, 1), countdown=60)
    revoked.revoke()
    wait_for(lambda: app.AsyncResult(revoked.id).state == "REVOKED", 30, "REVOKED",
             results.diag)


@pytest.mark.timeout(120)
def test_group_results_save_and_restore(results) -> None:
    app = results.app
    saved = group(sig(app, "add", i, 0) for i in range(3))()
    saved.save()
    restored = app.GroupResult.restore(saved.id)
    assert restored is not None and restored.get(timeout=30) == [0, 1, 2]
    restored.delete()
    assert app.GroupResult.restore(saved.id) is None


@pytest.mark.timeout(120)
def test_get_returns_on_the_stores_notification_not_on_a_poll(results) -> None:
    # With a 60 s polling interval, a result 1 s away only arrives in time if
    # the backend wakes on the store's notification.
    result = results.app.send_task("results.sleep", (1.0,))
    assert result.get(timeout=30, interval=60) == 1.0, results.diag()
    header = group(sig(results.app, "sleep", 0.5) for _ in range(3))()
    assert header.join_native(timeout=30, interval=60) == [0.5] * 3


@pytest.mark.timeout(120)
def test_a_result_over_the_limit_fails_its_task_clearly_and_the_worker_goes_on(results) -> None:
    huge = results.app.send_task("results.big", (16 * 1024 * 1024 + 1,))
    with pytest.raises(Exception) as info:
        huge.get(timeout=60)
    assert "ResultTooLarge" in type(info.value).__name__ + repr(info.value), results.diag()
    assert "gorelay_result_max_bytes" in str(info.value)
    assert results.app.send_task("results.add", (20, 22)).get(timeout=30) == 42


def _final(results, task_id: str, state: str):
    def done():
        record = results.history.task(task_id)
        return record if record is not None and record.state == state else None
    return wait_for(done, 30, f"history of {task_id} to reach {state}",
                    lambda: f"{results.history.task(task_id)}\n{results.events(task_id)}\n"
                            + results.diag())


@pytest.mark.timeout(120)
def test_history_of_a_task_that_fails_twice_then_succeeds(results) -> None:
    tag = uuid.uuid4().hex
    result = results.app.send_task("results.flaky", (tag, 2))
    assert result.get(timeout=30) == f"{tag} ok after 2 retries"
    record = _final(results, result.id, "SUCCESS")
    # a retry publishes the next attempt, then reports itself (Celery's order); the prefork
    # parent records "received" and the child the rest, so wait for both flushes
    retry = ["sent", "retried", "received", "started"]
    expected = ["sent", "received", "started"] + retry + retry + ["succeeded"]
    wait_for(lambda: results.events(result.id) == expected, 10, "the whole timeline",
             lambda: f"{results.events(result.id)}\n{results.diag()}")
    assert record.name == "results.flaky" and record.attempt == 2
    assert record.args == f'["{tag}", 2]' and record.result == f'"{tag} ok after 2 retries"'
    assert record.worker == results.shared_worker.nodename and record.runtime is not None
    retried = [e for e in results.history.events(result.id) if e.event == "retried"]
    assert "ConnectionError" in retried[0].info and "attempt 1" in retried[0].info


@pytest.mark.timeout(120)
def test_a_task_out_of_retries_ends_dead_with_its_traceback(results) -> None:
    tag = uuid.uuid4().hex
    result = results.app.send_task("results.hopeless", (tag,))
    with pytest.raises(TimeoutError):
        result.get(timeout=30)
    record = _final(results, result.id, "DEAD")
    assert record.exc_type == "TimeoutError" and "upstream down" in record.exc_message
    assert "Traceback" in record.traceback and "hopeless" in record.traceback
    assert results.events(result.id).count("retried") == 2
    assert results.history.counts()["DEAD"] >= 1


@pytest.mark.timeout(120)
def test_the_worker_is_registered_with_its_settings_and_counts(results) -> None:
    node = results.shared_worker.nodename
    results.app.send_task("results.add", (1, 2)).get(timeout=30)

    def registered():
        found = [w for w in results.history.workers() if w.hostname == node]
        return found[0] if found and found[0].done >= 1 else None

    worker = wait_for(registered, 30, f"{node} registered with a done task", results.diag)
    assert worker.pid == results.shared_worker.pid and worker.pool == "prefork"
    assert worker.concurrency == 3 and "celery" in worker.queues and not worker.stopped


@pytest.mark.timeout(180)
def test_a_killed_worker_is_lost_and_its_task_shows_the_redelivery(results) -> None:
    from gorelay_kombu.compat.registry import worker_status

    queue = f"victim-{uuid.uuid4().hex[:6]}"
    victim = results.worker("victim", pool="threads", concurrency=1, queues=queue)
    tag = uuid.uuid4().hex
    result = results.app.send_task("results.slow_late", (tag, 3.0), queue=queue)
    _final(results, result.id, "STARTED")
    victim.kill()  # SIGKILL mid-task: no clean shutdown, no ack

    def status():
        found = [w for w in results.history.workers() if w.hostname == victim.nodename]
        return found and worker_status(found[0], interval=0.5) == "lost"

    wait_for(status, 30, f"{victim.nodename} to be reported lost", results.diag)
    results.worker("rescuer", pool="threads", concurrency=1, queues=queue)
    assert result.get(timeout=60) == tag, results.diag()
    _final(results, result.id, "SUCCESS")
    timeline = results.history.events(result.id)
    assert [e.event for e in timeline] == [
        "sent", "received", "started", "received", "started", "succeeded"], timeline
    assert timeline[1].worker == victim.nodename and timeline[3].info == "redelivered"
    assert timeline[3].worker != victim.nodename


@pytest.mark.timeout(120)
def test_expired_results_are_gone_after_cleanup(results, tmp_path) -> None:
    app = results.app
    short = type(app)("short", broker=results.url, backend=results.url, set_as_current=False)
    short.conf.result_expires = 1
    key = "celery-task-meta-expiring-" + uuid.uuid4().hex
    short.backend.set(key, b'{"status": "SUCCESS"}')
    assert short.backend.get(key) is not None
    store = short.backend.store
    wait_for(lambda: short.backend.get(key) is None, 10, "the result to expire")
    short.backend.cleanup()
    assert store.kv_purge_expired() == 0  # cleanup left no expired row behind
    short.close()


@pytest.mark.timeout(120)
def test_workers_prune_history_past_its_retention(results) -> None:
    # a worker keeping successes 1 s and failures a day (its upkeep runs at its first beats)
    done = results.app.send_task("results.add", (5, 5))
    failed = results.app.send_task("results.decline", ("order-9",))
    assert done.get(timeout=30) == 10
    import results_app

    with pytest.raises(results_app.PaymentDeclined):
        failed.get(timeout=30)
    _final(results, done.id, "SUCCESS")
    _final(results, failed.id, "FAILURE")
    # past the 1 s retention before the pruner's first upkeep (its next is a minute later)
    wait_for(lambda: time.time() - results.history.task(done.id).updated_at > 1.5, 10,
             "the success to be older than its retention")
    pruner = results.worker("pruner", pool="threads", concurrency=1, queues="pruner-idle",
                            env={"GORELAY_RESULTS_RETENTION": '{"SUCCESS": 1, "FAILURE": 86400}'})
    try:
        wait_for(lambda: results.history.task(done.id) is None, 30,
                 "the success to be pruned", results.diag)
        assert results.history.task(failed.id) is not None  # kept: within its retention
        assert results.history.events(done.id) == []
    finally:
        pruner.stop()
