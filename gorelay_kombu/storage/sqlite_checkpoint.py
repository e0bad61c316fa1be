"""WAL checkpoints of the SQLite store, off the hot path (one thread per file and process)."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
import weakref
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .sqlite import SQLiteStore


class Checkpointer:
    """One thread per database file and process: PASSIVE WAL checkpoints, off the hot path.

    It wakes every :attr:`interval` seconds while a store of this process
    that has written to the file is open, and exits when none is; every
    :attr:`busy_interval` seconds while the WAL keeps changing.  Under a
    steady stream of commits the WAL fills its automatic-checkpoint threshold
    in well under a second, and the commit that crosses it copies back, and
    fsyncs, whatever this thread has not copied yet while its caller waits:
    checkpointing often keeps that remainder small.
    """

    interval = 1.0
    busy_interval = 0.05
    _running: dict[str, Checkpointer] = {}
    _guard = threading.Lock()

    def __init__(self, path: str) -> None:
        self.path = path
        self.pid = os.getpid()
        self.stores: weakref.WeakSet[SQLiteStore] = weakref.WeakSet()
        self.thread = threading.Thread(target=self._run, name="gorelay-checkpoint", daemon=True)

    @classmethod
    def watch(cls, store: SQLiteStore) -> None:
        if store._checkpointed:
            return
        with cls._guard:
            current = cls._running.get(store.path)
            if current is None or current.pid != os.getpid() or not current.thread.is_alive():
                current = cls._running[store.path] = cls(store.path)
                current.thread.start()
            current.stores.add(store)
        store._checkpointed = True

    @classmethod
    def forget(cls, store: SQLiteStore) -> None:
        with cls._guard:
            current = cls._running.get(store.path)
            if current is not None:
                current.stores.discard(store)

    def _run(self) -> None:
        conn: sqlite3.Connection | None = None
        wait, last_log = self.busy_interval, -1  # started by a write
        try:
            while True:
                time.sleep(wait)
                with self._guard:
                    if not self.stores or os.getpid() != self.pid:
                        if self._running.get(self.path) is self:
                            del self._running[self.path]
                        return
                try:
                    if conn is None:
                        conn = sqlite3.connect(self.path, isolation_level=None,
                                               check_same_thread=False)
                    _, log, _ = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                except sqlite3.Error:
                    continue  # busy or gone: the next round tries again
                # frames in the WAL changed since the last round: commits are coming
                wait, last_log = (self.busy_interval if log != last_log else self.interval), log
        finally:
            if conn is not None:
                conn.close()
