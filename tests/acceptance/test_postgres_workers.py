"""Real ``celery worker`` processes on the PostgreSQL store (gorelay+postgresql://)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import acceptance_app
import pytest
from accept_helpers import Env, duplicates, read_lines, tags, wait_for

pytestmark = pytest.mark.acceptance

PER_PRODUCER = 2500


class PostgresEnv(Env):
    """An :class:`Env` whose workers, producers and client use one fresh schema."""

    def __init__(self, directory: Path, visibility_timeout: float | None = None) -> None:
        from tests import server_postgresql

        super().__init__(directory, visibility_timeout)
        self.url = server_postgresql.make_url()  # skips (or fails in CI) without a server

    def environ(self) -> dict[str, str]:
        env = super().environ()
        env["GORELAY_ACCEPT_POSTGRES_URL"] = self.url
        return env

    def celery_argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "celery", "-A", "postgres_accept_app", *args]

    def producer(self, name: str, prefix: str, count: int, record: Path):
        code = ("import postgres_accept_app, producer, sys; "
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
        from tests import server_postgresql

        try:
            super().close()
        finally:
            server_postgresql.cleanup(self.url)


@pytest.fixture
def pg_env(tmp_path: Path):
    envs: list[PostgresEnv] = []

    def factory(visibility_timeout: float | None = None) -> PostgresEnv:
        directory = tmp_path / f"env{len(envs)}"
        directory.mkdir()
        env = PostgresEnv(directory, visibility_timeout)
        envs.append(env)
        return env

    yield factory
    for env in envs:
        env.close()


@pytest.mark.timeout(240)
def test_four_prefork_workers_two_producers_run_every_task_once(pg_env, tmp_path: Path) -> None:
    env = pg_env(visibility_timeout=10)
    record = tmp_path / "record.txt"
    # Prefork: the pool children fork after the parent opened its connections.
    workers = [env.worker(pool="prefork", concurrency=2, name=f"w{i}", ready=False)
               for i in range(4)]
    for w in workers:
        w.wait_ready()
    producers = [env.producer(f"producer{i}", f"p{i}", PER_PRODUCER, record) for i in range(2)]
    expected = {f"p{i}-{n}" for i in range(2) for n in range(PER_PRODUCER)}

    def diagnostics() -> str:
        return env.diag(*producers, *workers, records=[record])

    wait_for(lambda: len(read_lines(record)) >= len(expected), 200,
             f"{len(expected)} executions", diagnostics, interval=0.2)
    for p in producers:
        assert p.wait(30) == 0, diagnostics()
        assert f"sent {PER_PRODUCER}" in p.log_text(), diagnostics()
    for w in workers:
        w.stop()
    ran = tags(record)
    dup = duplicates(ran)
    missing = sorted(expected - set(ran))
    assert not dup and not missing, (
        f"duplicates={dict(list(dup.items())[:20])} ({len(dup)}), "
        f"missing={missing[:20]} ({len(missing)})\n" + diagnostics())
    assert env.message_count("celery") == 0, diagnostics()
    for proc in (*workers, *producers):
        assert "Traceback" not in proc.log_text(), f"{proc.name} logged a traceback\n" + \
            diagnostics()
    per_worker = {w.nodename: sum(1 for line in read_lines(record) if line.endswith(w.nodename))
                  for w in workers}
    print(f"executions per worker: {per_worker}")


def _lines(record: Path, kind: str, tag: str) -> list[list[str]]:
    return [parts for parts in (line.split() for line in read_lines(record))
            if parts[:2] == [kind, tag]]


@pytest.mark.timeout(150)
def test_sigkilled_worker_task_runs_again(pg_env, tmp_path: Path) -> None:
    env = pg_env(visibility_timeout=1)
    record = tmp_path / "record.txt"
    first = env.worker(pool="prefork", concurrency=1, name="doomed")
    env.send("accept.slow", str(record), "victim", 3)  # acks_late
    behind = [f"behind-{i}" for i in range(5)]  # prefetched by the doomed worker
    env.send_many(("accept.record", (str(record), tag), {}) for tag in behind)

    wait_for(lambda: _lines(record, "start", "victim"), 60, "the slow task to start",
             lambda: env.diag(first, records=[record]))
    first.kill()  # SIGKILL the whole group: the main process and the pool child
    assert not _lines(record, "done", "victim"), env.diag(first, records=[record])

    second = env.worker(pool="prefork", concurrency=1, name="rescuer")
    wait_for(lambda: _lines(record, "done", "victim")
             and all(t in tags(record) for t in behind), 60,
             "the slow task to run again and complete, and the prefetched tasks to run",
             lambda: env.diag(second, first, records=[record]))
    time.sleep(2)  # two lease lengths: a wrong redelivery would show up meanwhile
    starts = _lines(record, "start", "victim")
    dones = _lines(record, "done", "victim")
    assert len(starts) == 2 and starts[0][2] != starts[1][2], env.diag(
        second, first, records=[record])
    assert len(dones) == 1 and dones[0][2] == starts[1][2], env.diag(
        second, first, records=[record])
    ran_behind = [t for t in tags(record) if t.startswith("behind-")]
    assert sorted(ran_behind) == sorted(behind), (
        f"prefetched tasks lost or duplicated: {ran_behind}\n"
        + env.diag(second, first, records=[record]))
    assert env.message_count("celery") == 0, env.diag(second, first, records=[record])
