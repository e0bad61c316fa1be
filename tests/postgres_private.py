"""A private PostgreSQL cluster a test may restart (never the shared server on 5432).

``initdb`` into a temporary directory (run as the ``postgres`` user when the
tests run as root), trust authentication, a free port on 127.0.0.1.  Skips
locally when the server binaries are missing, fails under ``CI=true``
(:func:`tests.conftest.require_server`).
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass

from tests.conftest import require_server


def _pg_bin() -> str | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return os.path.dirname(found[-1])
    initdb = shutil.which("initdb")
    return os.path.dirname(initdb) if initdb else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Cluster:
    bindir: str
    directory: str
    port: int
    as_user: list[str]

    @property
    def data(self) -> str:
        return os.path.join(self.directory, "data")

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    @property
    def log(self) -> str:
        return os.path.join(self.directory, "server.log")

    def ctl(self, *args: str, timeout: float = 60) -> None:
        options = f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1"
        subprocess.run([*self.as_user, os.path.join(self.bindir, "pg_ctl"), "-D", self.data,
                        "-l", self.log, "-w", "-t", "30", "-o", options, *args],
                       check=True, capture_output=True, timeout=timeout)

    def log_tail(self, lines: int = 30) -> str:
        try:
            with open(self.log) as fh:
                return "".join(fh.readlines()[-lines:])
        except OSError as exc:
            return f"(no server log: {exc})"


@contextlib.contextmanager
def private_cluster() -> Iterator[Cluster]:
    """Start a fresh cluster; stop and delete it afterwards."""
    bindir = _pg_bin()
    require_server("initdb (a private PostgreSQL cluster to restart)", bindir is not None,
                   "install the postgresql server package")
    assert bindir is not None
    as_user: list[str] = []
    directory = tempfile.mkdtemp(prefix="gorelay-pg-")
    if os.geteuid() == 0:  # the server refuses to run as root
        import pwd

        user = pwd.getpwnam("postgres")
        os.chown(directory, user.pw_uid, user.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    c = Cluster(bindir, directory, _free_port(), as_user)
    try:
        subprocess.run([*as_user, os.path.join(bindir, "initdb"), "-D", c.data, "-U", "postgres",
                        "-A", "trust", "--no-sync", "--no-instructions"],
                       check=True, capture_output=True, timeout=120)
        c.ctl("start")
        yield c
    finally:
        if os.path.exists(os.path.join(c.data, "postmaster.pid")):
            try:
                c.ctl("stop", "-m", "immediate")
            except (subprocess.SubprocessError, OSError):
                pass
        shutil.rmtree(directory, ignore_errors=True)
