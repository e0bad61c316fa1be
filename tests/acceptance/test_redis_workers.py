"""Real ``celery worker`` processes on the Redis store (gorelay+redis://)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import acceptance_app
import pytest
from accept_helpers import Env, duplicates, read_lines, tags, wait_for

pytestmark = pytest.mark.acceptance

TOTAL = 5000


class RedisEnv(Env):
    """An :class:`Env` whose workers, producers and client use a Redis key prefix."""

    def __init__(self, directory: Path, visibility_timeout: float | None = None) -> None:
        from tests import server_redis

        super().__init__(directory, visibility_timeout)
        self.url = server_redis.make_url()  # skips (or fails in CI) without a server

    def environ(self) -> dict[str, str]:
        env = super().environ()
        env["GORELAY_ACCEPT_REDIS_URL"] = self.url
        return env

    def celery_argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "celery", "-A", "redis_accept_app", *args]

    def producer(self, name: str, prefix: str, count: int, record: Path):
        code = ("import redis_accept_app, producer, sys; "
                "producer.main(sys.argv[1], int(sys.argv[2]), sys.argv[3])")
        return self.spawn(name, [sys.executable, "-c", code, prefix, str(count), str(record)])

    @property
    def app(self):
        if self._app is None:
            app = acceptance_app.make_app(str(self.db), self.visibility_timeout)
            app.conf.broker_url = self.url
            self._app = app
        return self._app

    def close(self) -> None:
        from tests import server_redis

        try:
            super().close()
        finally:
            server_redis.cleanup(self.url)


@pytest.fixture
def redis_env(tmp_path: Path):
    envs: list[RedisEnv] = []

    def factory(visibility_timeout: float | None = None) -> RedisEnv:
        directory = tmp_path / f"env{len(envs)}"
        directory.mkdir()
        env = RedisEnv(directory, visibility_timeout)
        envs.append(env)
        return env

    yield factory
    for env in envs:
        env.close()


@pytest.mark.timeout(240)
def test_four_workers_two_producers_run_every_task_once(redis_env, tmp_path: Path) -> None:
    env = redis_env(visibility_timeout=5)
    record = tmp_path / "record.txt"
    # Two prefork workers (their pool children fork after the parent connected)
    # and two threads workers.
    workers = [env.worker(pool=pool, concurrency=3, name=f"w{i}", ready=False)
               for i, pool in enumerate(("prefork", "prefork", "threads", "threads"))]
    for w in workers:
        w.wait_ready()
    half = TOTAL // 2
    producers = [env.producer(f"producer{i}", f"p{i}", half, record) for i in range(2)]
    expected = {f"p{i}-{n}" for i in range(2) for n in range(half)}

    def diagnostics() -> str:
        return env.diag(*producers, *workers, records=[record])

    wait_for(lambda: len(read_lines(record)) >= len(expected), 200,
             f"{len(expected)} executions", diagnostics)
    for p in producers:
        assert p.wait(30) == 0, diagnostics()
    for w in workers:
        w.stop()
    ran = tags(record)
    dup = duplicates(ran)
    missing = sorted(expected - set(ran))
    assert not dup and not missing, (
        f"duplicates={dict(list(dup.items())[:20])} ({len(dup)}), "
        f"missing={missing[:20]} ({len(missing)})\n" + diagnostics())
    assert env.message_count("celery") == 0, diagnostics()
    time.sleep(env.visibility_timeout + 0.5)  # an unflushed ack would come back now
    assert env.get_one("celery") is None, diagnostics()
    per_worker = {w.nodename: sum(1 for line in read_lines(record) if line.endswith(w.nodename))
                  for w in workers}
    assert all(per_worker.values()), f"a worker ran nothing: {per_worker}\n" + diagnostics()


def _lines(record: Path, kind: str, tag: str) -> list[list[str]]:
    return [parts for parts in (line.split() for line in read_lines(record))
            if parts[:2] == [kind, tag]]


@pytest.mark.timeout(150)
def test_sigkilled_worker_acks_late_task_runs_again(redis_env, tmp_path: Path) -> None:
    env = redis_env(visibility_timeout=1)
    record = tmp_path / "record.txt"
    first = env.worker(pool="prefork", concurrency=1, name="doomed")
    env.send("accept.slow", str(record), "victim", 3)
    wait_for(lambda: _lines(record, "start", "victim"), 60, "the slow task to start",
             lambda: env.diag(first, records=[record]))
    first.kill()  # SIGKILL the worker and its pool child mid-task
    assert not _lines(record, "done", "victim"), env.diag(first, records=[record])

    second = env.worker(pool="prefork", concurrency=1, name="rescuer")
    wait_for(lambda: _lines(record, "done", "victim"), 60, "the slow task to run again",
             lambda: env.diag(second, first, records=[record]))
    starts = _lines(record, "start", "victim")
    dones = _lines(record, "done", "victim")
    assert len(starts) == 2 and starts[0][2] != starts[1][2], env.diag(
        second, first, records=[record])
    assert len(dones) == 1 and dones[0][2] == starts[1][2], env.diag(
        second, first, records=[record])
    assert env.message_count("celery") == 0, env.diag(second, first, records=[record])
