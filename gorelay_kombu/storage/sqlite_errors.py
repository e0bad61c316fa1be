"""The SQLite store's errors at its boundary: where the file is, and sqlite3 errors."""

from __future__ import annotations

import os
import sqlite3

from ..errors import NotAStoreError, StoreError, StoreLocationError, StoreUnavailable


def check_location(path: str) -> None:
    """Raise :class:`StoreLocationError` naming the fix when ``path`` cannot hold a store."""
    directory = os.path.dirname(path)
    if not os.path.isdir(directory):
        raise StoreLocationError(
            f"The directory {directory!r} of the SQLite store {path!r} does not exist. "
            f"Create it (mkdir -p {directory}) or point the URL at an existing directory."
        )
    if os.path.isdir(path):
        raise StoreLocationError(
            f"{path!r} is a directory. Name a file in it, e.g. "
            f"gorelay+sqlite:///{os.path.join(path, 'relay.db')}."
        )
    if os.path.exists(path):
        if not os.access(path, os.R_OK | os.W_OK):
            raise StoreLocationError(
                f"The SQLite store {path!r} is not readable and writable by this user "
                f"(uid {os.getuid()}). Fix its permissions (chmod u+rw) or use another file."
            )
    if not os.access(directory, os.W_OK | os.X_OK):
        raise StoreLocationError(
            f"The directory {directory!r} is not writable by this user (uid {os.getuid()}); "
            "SQLite needs it for the database and its -wal/-shm files. Fix its permissions "
            "or point the URL at a writable directory."
        )


def translate(exc: sqlite3.Error, path: str, busy_timeout: float) -> StoreError:
    """The gorelay error for a sqlite3 error on the store at ``path``."""
    text = str(exc)
    if isinstance(exc, sqlite3.OperationalError) and (
        "locked" in text or "busy" in text
    ):
        return StoreUnavailable(
            f"The SQLite store {path!r} stayed locked for more than "
            f"busy_timeout={busy_timeout}s: {text}. Another process holds a long "
            "write transaction; raise busy_timeout in transport_options if that is expected."
        )
    if "not a database" in text or "malformed" in text or "file is encrypted" in text:
        return NotAStoreError(
            f"{path!r} is not a SQLite database gorelay can use ({text}). "
            "Point the URL at a new file name, or move this file away if it is not yours."
        )
    if "readonly" in text or "unable to open" in text or "disk I/O" in text:
        return StoreLocationError(
            f"The SQLite store {path!r} cannot be written ({text}). Check the file's "
            "and its directory's permissions and free disk space."
        )
    return StoreUnavailable(f"SQLite store {path!r} failed: {text}")
