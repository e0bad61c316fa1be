"""The PostgreSQL store's errors at its boundary: psycopg errors turned into
gorelay errors whose messages name the fix."""

from __future__ import annotations

from typing import TYPE_CHECKING

import psycopg
from psycopg import errors as pg_errors

from ..errors import (
    StoreAuthenticationError,
    StoreError,
    StoreLocationError,
    StorePermissionError,
    StoreUnavailable,
)

if TYPE_CHECKING:
    from .postgres import PostgresStore


def connect_error(store: PostgresStore, exc: psycopg.Error) -> StoreError:
    """The error for a failed connection attempt."""
    text = str(exc)
    where = f"{store.display} (schema {store.schema})"
    if ("password" in text or ("role" in text and "does not exist" in text)
            or "pg_hba.conf" in text or "authentication failed" in text):
        return StoreAuthenticationError(
            f"PostgreSQL at {store.host}:{store.port} refused user {store.user!r}: "
            f"{first_line(text)}. Fix the user name and password in the URL "
            "(gorelay+postgresql://user:password@host/db), or create the role "
            f"(CREATE ROLE {store.user or 'name'} LOGIN PASSWORD '...') and allow it in "
            "pg_hba.conf."
        )
    if "database" in text and "does not exist" in text:
        return StoreLocationError(
            f"The database {store.dbname!r} does not exist on {store.host}:{store.port}. "
            f"Create it (createdb -h {store.host} -p {store.port} {store.dbname}) or fix the "
            "database name at the end of the URL."
        )
    if "resolve host" in text or "translate host name" in text:
        return StoreLocationError(
            f"The PostgreSQL host {store.host!r} is unknown ({first_line(text)}). "
            "Fix the host name in the URL."
        )
    return StoreUnavailable(
        f"Cannot reach PostgreSQL at {where}: {first_line(text)}. Check that the "
        "server is running and accepts TCP connections on that host and port; "
        "Celery keeps retrying."
    )


def operation_error(store: PostgresStore, exc: psycopg.Error) -> StoreError:
    """The error for a failed operation on an open connection."""
    if isinstance(exc, pg_errors.InsufficientPrivilege):
        return StorePermissionError(
            f"User {store.user!r} lacks a privilege on schema {store.schema!r} of "
            f"{store.display}: {first_line(str(exc))}. Grant it: GRANT USAGE, CREATE ON "
            f"SCHEMA {store.schema} TO {store.user} and GRANT ALL ON ALL TABLES IN SCHEMA "
            f"{store.schema} TO {store.user} (or let this user own the schema)."
        )
    if isinstance(exc, (psycopg.OperationalError, psycopg.InterfaceError)):
        return StoreUnavailable(
            f"PostgreSQL at {store.display} is unavailable: {first_line(str(exc))}. "
            "The connection is replaced on its own; retrying may succeed."
        )
    return StoreError(f"PostgreSQL store {store.display} refused an operation: {exc}")


def first_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0] if lines else text
