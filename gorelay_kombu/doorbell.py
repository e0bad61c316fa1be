"""Cross-process wake-ups for file stores: a directory of datagram sockets.

Every waiting consumer binds a Unix datagram socket in a directory derived
from the store's path; a producer, after its commit, sends one byte to each
socket there.  A consumer blocks in ``select`` on its socket, so an idle
worker costs no CPU and wakes within a fraction of a millisecond.  A socket
whose owner died refuses the datagram and is removed by the next producer.

Lost rings are harmless: consumers also wake on a slow fallback timer and on
the next due time of scheduled messages.  Where ``AF_UNIX`` is missing the
doorbell is disabled and only the timers remain.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import select
import socket
import tempfile
import time
import uuid

from .storage.base import Waiter

HAVE_UNIX_SOCKETS = hasattr(socket, "AF_UNIX")


def doorbell_dir(store_path: str) -> str:
    """The directory of sockets for the store file at ``store_path``."""
    digest = hashlib.sha1(os.path.realpath(store_path).encode()).hexdigest()[:16]
    return os.path.join(tempfile.gettempdir(), f"gorelay-{os.getuid()}-{digest}")


class Doorbell:
    """The producer side: rings every socket in the directory."""

    #: how long the list of sockets is trusted before the directory is looked at
    #: again; a consumer newer than that waits in short steps (see SocketWaiter)
    refresh_seconds = 0.05

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self._mtime = -1
        self._checked = 0.0
        self._targets: list[str] = []
        self._sock: socket.socket | None = None

    def ring(self) -> None:
        """Wake every waiting consumer; never raises."""
        if not HAVE_UNIX_SOCKETS:
            return
        now = time.monotonic()
        if now - self._checked >= self.refresh_seconds:
            self._checked = now
            try:
                mtime = os.stat(self.directory).st_mtime_ns
            except OSError:
                return  # nobody has ever waited on this store
        else:
            mtime = self._mtime
        if mtime != self._mtime:
            self._mtime = mtime
            with contextlib.suppress(OSError):
                self._targets = [
                    os.path.join(self.directory, n)
                    for n in os.listdir(self.directory)
                    if n.endswith(".sock")
                ]
        if self._sock is None:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self._sock.setblocking(False)
        for target in self._targets:
            try:
                self._sock.sendto(b"\x01", target)
            except BlockingIOError:
                pass  # its buffer is full: it is already awake
            except (ConnectionRefusedError, FileNotFoundError):
                with contextlib.suppress(OSError):
                    os.unlink(target)  # its owner died
            except OSError:
                pass

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


class SocketWaiter(Waiter):
    """The consumer side: one bound socket, woken by :class:`Doorbell`."""

    def __init__(self, directory: str) -> None:
        self.path: str | None = None
        self._sock: socket.socket | None = None
        if not HAVE_UNIX_SOCKETS:
            return
        with contextlib.suppress(FileExistsError):
            os.makedirs(directory, mode=0o700)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        path = os.path.join(directory, f"{os.getpid()}-{uuid.uuid4().hex[:12]}.sock")
        try:
            sock.bind(path)
        except OSError:
            sock.close()
            return  # no doorbell: the fallback timers still wake us
        sock.setblocking(False)
        self._sock, self.path = sock, path
        self._pid = os.getpid()
        # Producers may not know this socket for Doorbell.refresh_seconds:
        # until then, wait in short steps so no early ring can be missed.
        self._young_until = time.monotonic() + 2 * Doorbell.refresh_seconds

    def fileno(self) -> int:
        return self._sock.fileno() if self._sock is not None else -1

    def wait(self, timeout: float) -> bool:
        if self._sock is None:
            if timeout > 0:
                select.select([], [], [], timeout)
            return False
        if time.monotonic() < self._young_until:
            timeout = min(timeout, 0.005)
        readable, _, _ = select.select([self._sock], [], [], max(timeout, 0.0))
        if not readable:
            return False
        self.drain()
        return True

    def wake(self) -> None:
        if self._sock is None or self.path is None:
            return
        try:
            self._sock.sendto(b"\x02", self.path)
        except OSError:
            pass  # buffer full: already awake

    def drain(self) -> None:
        """Consume pending rings without blocking."""
        if self._sock is None:
            return
        while True:
            try:
                self._sock.recv(64)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
            if self.path and os.getpid() == self._pid:
                with contextlib.suppress(OSError):
                    os.unlink(self.path)
