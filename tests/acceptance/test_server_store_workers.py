"""Real ``celery worker`` processes on the server stores (PostgreSQL, Redis).

The same scenarios for each: four prefork workers and two producers run
5,000 tasks exactly once; a worker SIGKILLed mid-task with ``acks_late`` has
its task, and the tasks it had prefetched, run again elsewhere.
"""

from __future__ import annotations

import contextlib
import importlib
import sys
import time
from pathlib import Path

import acceptance_app
import pytest
from accept_helpers import Env, duplicates, read_lines, tags, wait_for

from tests.conftest import SERVER_KINDS, STORE_KINDS

pytestmark = pytest.mark.acceptance

PER_PRODUCER = 2500
KINDS = [kind for kind in SERVER_KINDS if kind in STORE_KINDS]


class ServerEnv(Env):
    """An :class:`Env` whose workers, producers and client use a fresh namespace
    (schema or key prefix) of one server store."""

    def __init__(self, kind: str, directory: Path, visibility_timeout: float | None = None,
                 url: str | None = None):
        super().__init__(directory, visibility_timeout)
        self.server = importlib.import_module(f"tests.server_{kind}")
        # skips (or fails in CI) without a server
        self.url = url if url is not None else self.server.make_url()

    def environ(self) -> dict[str, str]:
        env = super().environ()
        env["GORELAY_ACCEPT_BROKER_URL"] = self.url
        return env

    def celery_argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "celery", "-A", "server_accept_app", *args]

    def producer(self, name: str, prefix: str, count: int, record: Path):
        code = ("import server_accept_app, producer, sys; "
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
        try:
            super().close()
        finally:
            with contextlib.suppress(Exception):  # a private server may be gone already
                self.server.cleanup(self.url)


@pytest.fixture(params=KINDS)
def server_env(request, tmp_path: Path):
    envs: list[ServerEnv] = []

    def factory(visibility_timeout: float | None = None) -> ServerEnv:
        directory = tmp_path / f"env{len(envs)}"
        directory.mkdir()
        env = ServerEnv(request.param, directory, visibility_timeout)
        envs.append(env)
        return env

    yield factory
    for env in envs:
        env.close()


@pytest.mark.timeout(240)
def test_four_prefork_workers_two_producers_run_every_task_once(server_env, tmp_path):
    env = server_env(visibility_timeout=5)
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
    time.sleep(env.visibility_timeout + 0.5)  # an unflushed ack would come back now
    assert env.get_one("celery") is None, diagnostics()
    for proc in (*workers, *producers):
        assert "Traceback" not in proc.log_text(), f"{proc.name} logged a traceback\n" + \
            diagnostics()


def _lines(record: Path, kind: str, tag: str) -> list[list[str]]:
    return [parts for parts in (line.split() for line in read_lines(record))
            if parts[:2] == [kind, tag]]


@pytest.mark.timeout(150)
def test_sigkilled_worker_task_runs_again(server_env, tmp_path):
    env = server_env(visibility_timeout=1)
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
    diag = env.diag(second, first, records=[record])
    assert len(starts) == 2 and starts[0][2] != starts[1][2], diag
    assert len(dones) == 1 and dones[0][2] == starts[1][2], diag
    ran_behind = [t for t in tags(record) if t.startswith("behind-")]
    assert sorted(ran_behind) == sorted(behind), f"prefetched tasks lost or duplicated\n{diag}"
    assert env.message_count("celery") == 0, diag


@contextlib.contextmanager
def restartable_server(kind: str, directory: Path):
    """A private server of ``kind`` and a broker URL on it: ``(url, restart)``."""
    if kind == "redis":
        from tests.redis_private import PrivateRedis

        redis_server = PrivateRedis(directory)  # AOF with appendfsync always
        redis_server.start()
        try:
            yield f"gorelay+{redis_server.url(0)}?key_prefix=restart:", redis_server.restart
        finally:
            redis_server.stop()
    else:
        from tests.postgres_private import private_cluster

        with private_cluster() as cluster:
            yield (f"gorelay+{cluster.url}",
                   lambda: cluster.ctl("restart", "-m", "immediate"))  # a crash, then recovery


@pytest.mark.timeout(240)
@pytest.mark.parametrize("kind", KINDS)
def test_worker_and_producer_carry_on_through_a_server_restart(kind, tmp_path):
    """The store's server crashes and comes back under a running worker (Redis
    SIGKILLed with AOF fsync on every write; PostgreSQL ``pg_ctl restart -m
    immediate``): the worker reconnects by itself and every task whose publish
    returned runs (at least once)."""
    (tmp_path / "env").mkdir()
    record = tmp_path / "record.txt"
    with restartable_server(kind, tmp_path) as (url, restart):
        env = ServerEnv(kind, tmp_path / "env", visibility_timeout=2, url=url)
        try:
            worker = env.worker(pool="threads", concurrency=4, name="survivor")
            before = [f"before-{i}" for i in range(200)]
            env.send_many(("accept.record", (str(record), tag), {}) for tag in before)
            wait_for(lambda: len(set(tags(record))) >= 50, 60, "the first tasks to run",
                     lambda: env.diag(worker, records=[record]))
            restart()
            after = [f"after-{i}" for i in range(200)]
            env.send_many(("accept.record", (str(record), tag), {}) for tag in after)
            wanted = set(before) | set(after)
            wait_for(lambda: wanted <= set(tags(record)), 120,
                     "every task published before and after the restart to run",
                     lambda: env.diag(worker, records=[record]))
            # Redis: Celery logs "Connection to broker lost" and reconnects; PostgreSQL:
            # the store's pool replaces the dropped connections under the worker.
            assert worker.running(), env.diag(worker, records=[record])
        finally:
            env.close()
