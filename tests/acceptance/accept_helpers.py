"""Helpers for the acceptance tests: real ``celery worker`` subprocesses.

Every subprocess runs in its own session (process group), with stdout and
stderr in a log file next to the test's SQLite store.  Finalizers terminate
whole groups (SIGTERM, then SIGKILL after a timeout), so no worker outlives
its test even when the test fails.  Assertion messages carry the tails of the
relevant logs (see :func:`diag`).
"""

from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import acceptance_app  # noqa: E402

STOP_TIMEOUT = 15.0
READY_TIMEOUT = 60.0


# -- helpers -----------------------------------------------------------------
def wait_for(condition: Callable[[], object], timeout: float, what: str,
             diagnostics: Callable[[], str] = lambda: "", interval: float = 0.05) -> object:
    """Poll ``condition`` until it is truthy; fail with diagnostics on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}\n{diagnostics()}",
                        pytrace=False)
        time.sleep(interval)


def read_lines(path: Path) -> list[str]:
    try:
        return path.read_text().splitlines()
    except FileNotFoundError:
        return []


def tags(path: Path) -> list[str]:
    """First field of every line of a record file, in execution order."""
    return [line.split()[0] for line in read_lines(path) if line.strip()]


def duplicates(items: Iterable[str]) -> dict[str, int]:
    return {k: n for k, n in collections.Counter(items).items() if n > 1}


def tail(text: str, lines: int = 150) -> str:
    parts = text.splitlines()
    cut = parts[-lines:]
    prefix = [f"... ({len(parts) - len(cut)} earlier lines cut)"] if len(parts) > len(cut) else []
    return "\n".join(prefix + cut)


class Proc:
    """A subprocess in its own process group, logging to ``log``."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], cwd: Path,
                 log: Path) -> None:
        self.name, self.argv, self.log = name, argv, log
        self._logf = open(log, "ab")
        self.popen = subprocess.Popen(
            argv, env=env, cwd=cwd, stdout=self._logf, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )
        self.pid = self.popen.pid

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def running(self) -> bool:
        return self.popen.poll() is None

    def signal_group(self, sig: int) -> None:
        try:
            os.killpg(self.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def wait(self, timeout: float) -> int | None:
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def kill(self) -> None:
        """SIGKILL the whole group (the worker and its pool children)."""
        self.signal_group(signal.SIGKILL)
        self.popen.wait(timeout=STOP_TIMEOUT)

    def stop(self, timeout: float = STOP_TIMEOUT) -> int | None:
        """SIGTERM the main process (a worker's warm shutdown stops its own pool);
        SIGKILL the whole group after ``timeout``, and any leftover in it."""
        if self.running():
            try:
                os.kill(self.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            if self.wait(timeout) is None:
                self.signal_group(signal.SIGKILL)
                self.wait(STOP_TIMEOUT)
        self.signal_group(signal.SIGKILL)  # leftover pool children, if any
        if not self._logf.closed:
            self._logf.close()
        return self.popen.returncode

    def describe(self) -> str:
        state = "running" if self.running() else f"exited rc={self.popen.returncode}"
        return (f"===== {self.name} ({state}) log {self.log} =====\n"
                f"$ {' '.join(self.argv)}\n{tail(self.log_text())}")


class Worker(Proc):
    def __init__(self, nodename: str, *args: object, **kwargs: object) -> None:
        self.nodename = nodename
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> Worker:
        def ready() -> bool:
            if not self.running():
                pytest.fail(f"worker {self.nodename} exited before it was ready\n"
                            f"{self.describe()}", pytrace=False)
            return f"{self.nodename} ready." in self.log_text()

        wait_for(ready, timeout, f"worker {self.nodename} to be ready", self.describe)
        return self


def diag(*procs: Proc, records: Iterable[Path] = ()) -> str:
    out = []
    for path in records:
        lines = read_lines(path)
        body = tail("\n".join(lines), 40)
        out.append(f"===== record {path} ({len(lines)} lines) =====\n{body}")
    out.extend(p.describe() for p in procs)
    return "\n".join(out)


class Env:
    """One SQLite store in a directory, and the processes that use it."""

    #: the session's shared worker, on the ``shared`` fixture's Env only
    shared_worker: Worker

    def __init__(self, directory: Path, visibility_timeout: float | None = None,
                 default_queue: str = "celery", transport_options: dict | None = None) -> None:
        self.dir = directory
        self.db = directory / "relay.db"
        self.url = acceptance_app.broker_url(str(self.db))
        self.visibility_timeout = visibility_timeout
        self.default_queue = default_queue
        self.transport_options = dict(transport_options or {})
        self.procs: list[Proc] = []
        self._apps: list[object] = []
        self._app = None

    # -- environment for subprocesses -----------------------------------------
    def environ(self) -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            [str(HERE)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
        env["PYTHONUNBUFFERED"] = "1"
        env["GORELAY_ACCEPT_DB"] = str(self.db)
        env["GORELAY_ACCEPT_QUEUE"] = self.default_queue
        env["GORELAY_ACCEPT_OPTIONS"] = json.dumps(self.transport_options)
        if self.visibility_timeout is not None:
            env["GORELAY_ACCEPT_VT"] = str(self.visibility_timeout)
        else:
            env.pop("GORELAY_ACCEPT_VT", None)
        return env

    def celery_argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "celery", "-A", "acceptance_app", *args]

    # -- processes --------------------------------------------------------------
    def worker(self, *args: str, pool: str = "threads", concurrency: int = 2,
               quiet: bool = True, events: bool = False, ready: bool = True,
               name: str | None = None) -> Worker:
        nodename = f"{name or 'w'}-{uuid.uuid4().hex[:8]}@accept"
        argv = self.celery_argv(
            "worker", "-n", nodename, "-P", pool, "-c", str(concurrency), "-l", "INFO",
            *(["--without-gossip", "--without-mingle", "--without-heartbeat"] if quiet else []),
            *(["-E"] if events else []), *args,
        )
        log = self.dir / f"worker-{nodename.split('@')[0]}.log"
        w = Worker(nodename, nodename, argv, self.environ(), self.dir, log)
        self.procs.append(w)
        return w.wait_ready() if ready else w

    def spawn(self, name: str, argv: list[str]) -> Proc:
        log = self.dir / f"{name}-{uuid.uuid4().hex[:6]}.log"
        p = Proc(name, argv, self.environ(), self.dir, log)
        self.procs.append(p)
        return p

    def run(self, *celery_args: str, timeout: float = 60.0) -> subprocess.CompletedProcess:
        """Run a ``celery -A acceptance_app ...`` command to completion."""
        return subprocess.run(
            self.celery_argv(*celery_args), env=self.environ(), cwd=self.dir,
            capture_output=True, text=True, timeout=timeout,
        )

    # -- the test process as a client -------------------------------------------
    @property
    def app(self):
        if self._app is None:
            self._app = acceptance_app.make_app(
                str(self.db), self.visibility_timeout, self.default_queue,
                self.transport_options)
        return self._app

    def send(self, name: str, *args: object, **options: object):
        return self.app.send_task(name, args=args, **options)

    def send_many(self, calls: Iterable[tuple[str, tuple, dict]]) -> None:
        with self.app.producer_or_acquire() as producer:
            for name, args, options in calls:
                self.app.send_task(name, args=args, producer=producer, **options)

    def kombu_options(self) -> dict:
        options = dict(self.transport_options)
        if self.visibility_timeout is not None:
            options["visibility_timeout"] = self.visibility_timeout
        return options

    def message_count(self, queue: str) -> int:
        import kombu

        with kombu.Connection(self.url, transport_options=self.kombu_options()) as conn:
            return conn.default_channel.queue_declare(queue, passive=True).message_count

    def get_one(self, queue: str):
        """``basic_get`` one message from ``queue`` as a plain kombu consumer would
        (expired leases become deliverable first); its body, or None if empty."""
        import kombu

        with kombu.Connection(self.url, transport_options=self.kombu_options()) as conn:
            message = conn.default_channel.basic_get(queue, no_ack=False)
            if message is None:
                return None
            return {"headers": message.headers, "body": message.body}

    def diag(self, *extra: Proc, records: Iterable[Path] = ()) -> str:
        procs = list(extra) + [p for p in self.procs if p not in extra]
        return diag(*procs, records=records)

    def close(self) -> None:
        for p in reversed(self.procs):
            p.stop()
        if self._app is not None:
            self._app.close()
