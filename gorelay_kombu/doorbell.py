"""Cross-process wake-ups for file stores: a directory of named pipes.

Every waiting consumer creates a FIFO in a directory derived from the
store's path and keeps it open; a producer, after its commit, writes one
byte into each FIFO there.  A consumer blocks in ``poll`` on its FIFO, so an
idle worker costs no CPU and wakes within a fraction of a millisecond.

A producer keeps every FIFO open (read-write, non-blocking), so a ring is one
``write`` that cannot fail while the pipe has room (64 KiB of rings) and
never raises ``SIGPIPE``.  A consumer holds an exclusive ``flock`` on its
FIFO while it lives; a FIFO nobody holds that lock on belongs to a dead
process and is removed by the next producer that looks.

Lost rings are harmless: consumers also wake on a slow fallback timer and on
the next due time of scheduled messages.  Sockets (``*.sock``) that waiters
of earlier releases bind in the same directory are still rung.  Where FIFOs
or ``flock`` are missing the doorbell is disabled and only the timers remain.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import select
import socket
import tempfile
import threading
import time
import uuid
import weakref

from .storage.base import Waiter

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

HAVE_FIFOS = hasattr(os, "mkfifo") and fcntl is not None
HAVE_UNIX_SOCKETS = hasattr(socket, "AF_UNIX")
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_PIPE_FLAGS = os.O_RDWR | os.O_NONBLOCK | _CLOEXEC
#: most FIFOs one producer keeps open; rings to the others open and close each time
MAX_OPEN_PIPES = 256


def doorbell_dir(store_path: str) -> str:
    """The directory of FIFOs for the store file at ``store_path``."""
    digest = hashlib.sha1(os.path.realpath(store_path).encode()).hexdigest()[:16]
    return os.path.join(tempfile.gettempdir(), f"gorelay-{os.getuid()}-{digest}")


def _owner_alive(fd: int) -> bool:
    """True while the consumer that made this FIFO holds its lock."""
    assert fcntl is not None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return True  # cannot tell: keep ringing it
    fcntl.flock(fd, fcntl.LOCK_UN)
    return False


class Doorbell:
    """The producer side: rings every FIFO (and older-release socket) in the directory."""

    #: how long the list of FIFOs is trusted before the directory is looked at
    #: again; a consumer newer than that waits in short steps (see PipeWaiter)
    refresh_seconds = 0.05

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self._mtime = -1
        self._checked = 0.0
        self._pipes: dict[str, int] = {}  # FIFO path -> our fd
        self._closed_pipes: list[str] = []  # beyond MAX_OPEN_PIPES: opened per ring
        self._fds: tuple[int, ...] = ()
        self._full_checked: dict[int, float] = {}  # fd -> when its owner was last looked at
        self._sockets: list[str] = []
        self._sock: socket.socket | None = None
        # Held while writing and while fds are closed: a ring never writes to an
        # fd number another thread has just closed (and someone else reused).
        self._lock = threading.Lock()
        _DOORBELLS.add(self)

    def ring(self) -> None:
        """Wake every waiting consumer; never raises."""
        if not HAVE_FIFOS:
            return
        with self._lock:
            now = time.monotonic()
            if now - self._checked >= self.refresh_seconds:
                self._checked = now
                try:
                    mtime = os.stat(self.directory).st_mtime_ns
                except OSError:
                    return  # nobody has ever waited on this store
                if mtime != self._mtime:
                    self._mtime = mtime
                    self._refresh()
            write = os.write
            for fd in self._fds:
                try:
                    write(fd, b"\x01")
                except BlockingIOError:  # full: its owner is awake-bound or dead
                    self._full(fd)
                except OSError:
                    pass
            if self._closed_pipes:
                self._ring_closed()
            if self._sockets:
                self._ring_sockets()

    def _refresh(self) -> None:
        try:
            names = os.listdir(self.directory)
        except OSError:
            return
        pipes: dict[str, int] = {}
        closed: list[str] = []
        sockets: list[str] = []
        for name in names:
            path = os.path.join(self.directory, name)
            if name.endswith(".sock"):
                sockets.append(path)
            elif name.endswith(".fifo"):
                fd = self._pipes.pop(path, None)
                if fd is None and len(pipes) < MAX_OPEN_PIPES:
                    fd = self._open(path)
                    if fd is None:
                        continue  # dead owner: removed
                if fd is None:
                    closed.append(path)
                else:
                    pipes[path] = fd
        for fd in self._pipes.values():  # gone from the directory
            self._full_checked.pop(fd, None)
            with contextlib.suppress(OSError):
                os.close(fd)
        self._pipes, self._closed_pipes, self._sockets = pipes, closed, sockets
        self._fds = tuple(pipes.values())

    @staticmethod
    def _open(path: str) -> int | None:
        """Open a FIFO for ringing, or remove it if its owner died."""
        try:
            fd = os.open(path, _PIPE_FLAGS)
        except OSError:
            return None
        if not _owner_alive(fd):
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(path)
            return None
        return fd

    def _full(self, fd: int) -> None:
        """A full FIFO: 64 KiB of rings nobody read.  Drop it if its owner died
        (looked at about once a second per FIFO: a busy owner stays full)."""
        now = time.monotonic()
        if now - self._full_checked.get(fd, -1e9) < 1.0:
            return
        self._full_checked[fd] = now
        if _owner_alive(fd):
            return
        self._full_checked.pop(fd, None)
        for path, open_fd in list(self._pipes.items()):
            if open_fd == fd:
                del self._pipes[path]
                with contextlib.suppress(OSError):
                    os.unlink(path)
        self._fds = tuple(self._pipes.values())
        with contextlib.suppress(OSError):
            os.close(fd)

    def _ring_closed(self) -> None:
        for path in self._closed_pipes:
            fd = self._open(path)
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.write(fd, b"\x01")
                os.close(fd)

    def _ring_sockets(self) -> None:
        """Waiters of earlier releases bind datagram sockets here."""
        if not HAVE_UNIX_SOCKETS:
            return
        if self._sock is None:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self._sock.setblocking(False)
        for target in self._sockets:
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
        with self._lock:
            for fd in self._pipes.values():
                with contextlib.suppress(OSError):
                    os.close(fd)
            self._pipes, self._fds, self._mtime = {}, (), -1
            self._full_checked.clear()
            if self._sock is not None:
                self._sock.close()
                self._sock = None

    def _after_fork(self) -> None:
        self._lock = threading.Lock()  # another thread may have held it at fork


_DOORBELLS: weakref.WeakSet[Doorbell] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for doorbell in list(_DOORBELLS):
        doorbell._after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class PipeWaiter(Waiter):
    """The consumer side: one FIFO, rung by :class:`Doorbell`."""

    def __init__(self, directory: str) -> None:
        self.path: str | None = None
        self._fd = -1
        self._pid = os.getpid()
        if not HAVE_FIFOS:
            return
        assert fcntl is not None
        with contextlib.suppress(FileExistsError):
            os.makedirs(directory, mode=0o700)
        stem = os.path.join(directory, f"{self._pid}-{uuid.uuid4().hex[:12]}")
        # Made and locked under another name, then renamed: a producer never
        # sees an unlocked FIFO of a live consumer (and removes it as dead).
        try:
            os.mkfifo(stem + ".new", 0o600)
        except OSError:
            return  # no doorbell: the fallback timers still wake us
        fd = -1
        try:
            fd = os.open(stem + ".new", _PIPE_FLAGS)
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.rename(stem + ".new", stem + ".fifo")
        except OSError:
            if fd >= 0:
                os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(stem + ".new")
            return
        self._fd, self.path = fd, stem + ".fifo"
        self._poll = select.poll() if hasattr(select, "poll") else None
        if self._poll is not None:
            self._poll.register(fd, select.POLLIN)
        # Producers may not know this FIFO for Doorbell.refresh_seconds:
        # until then, wait in short steps so no early ring can be missed.
        self._young_until = time.monotonic() + 2 * Doorbell.refresh_seconds

    def fileno(self) -> int:
        return self._fd

    def wait(self, timeout: float) -> bool:
        if self._fd < 0:
            if timeout > 0:
                select.select([], [], [], timeout)
            return False
        if time.monotonic() < self._young_until:
            timeout = min(timeout, 0.005)
        timeout = max(timeout, 0.0)
        if self._poll is not None:
            readable = bool(self._poll.poll(timeout * 1000.0))
        else:
            readable = bool(select.select([self._fd], [], [], timeout)[0])
        if not readable:
            return False
        self.drain()
        return True

    def wake(self) -> None:
        if self._fd < 0:
            return
        try:
            os.write(self._fd, b"\x02")
        except OSError:
            pass  # full: already awake

    def drain(self) -> None:
        """Consume pending rings without blocking."""
        if self._fd < 0:
            return
        while True:
            try:
                if len(os.read(self._fd, 65536)) < 65536:
                    return
            except OSError:  # BlockingIOError: nothing left
                return

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
            if self.path and os.getpid() == self._pid:
                with contextlib.suppress(OSError):
                    os.unlink(self.path)


#: the name earlier releases used
SocketWaiter = PipeWaiter
