"""A private ``redis-server`` a test may kill and restart (never the shared one on 6379).

It listens on a free port of 127.0.0.1 with AOF on and fsync on every write
(``--appendonly yes --appendfsync always --save ""``), its data in the test's
own directory, so a restart on the same port and directory keeps every write
the server acknowledged.  Skips locally when the binary is missing, fails under
``CI=true`` (:func:`tests.conftest.require_server`).
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from tests.conftest import require_server


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PrivateRedis:
    """One redis-server process at a time on a fixed port and directory."""

    def __init__(self, directory: Path, password: str | None = None) -> None:
        self.password = password
        binary = shutil.which("redis-server")
        require_server("redis-server (binary on PATH)", binary is not None)
        assert binary is not None
        self.binary, self.directory = binary, directory
        self.port = _free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = directory / "redis-server.log"
        self.restarts = 0

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def client(self):
        import redis

        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5,
                           socket_connect_timeout=1, password=self.password)

    def start(self, timeout: float = 15.0) -> None:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [self.binary, "--port", str(self.port), "--bind", "127.0.0.1",
                 "--appendonly", "yes", "--appendfsync", "always", "--save", "",
                 "--dir", str(self.directory), "--daemonize", "no", "--protected-mode", "no",
                 *(["--requirepass", self.password] if self.password else [])],
                stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while True:
            try:
                if self.client().ping():
                    return
            except Exception as exc:  # noqa: BLE001 - starting, or loading the AOF
                if self.proc.poll() is not None:
                    raise RuntimeError(
                        f"redis-server exited:\n{self.log.read_text()[-3000:]}") from exc
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"redis-server not up:\n{self.log.read_text()[-3000:]}") from exc
                time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL: no shutdown work at all."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def shutdown_nosave(self) -> None:
        """``SHUTDOWN NOSAVE``: the server stops without writing an RDB snapshot."""
        try:
            self.client().shutdown(nosave=True)
        except Exception:  # noqa: BLE001 - redis-py reports the closed connection
            pass
        assert self.proc is not None
        self.proc.wait(10)

    def restart(self, how: str = "kill", down_for: float = 0.5) -> None:
        (self.kill if how == "kill" else self.shutdown_nosave)()
        time.sleep(down_for)
        self.start()
        self.restarts += 1

    def stop(self) -> None:
        self.kill()
