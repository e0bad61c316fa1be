"""PostgreSQL for the shared suites: every store and URL in its own schema.

The server comes from ``GORELAY_TEST_POSTGRES_URL`` (default
``postgresql://postgres@127.0.0.1:5432/test``); the user must be allowed to
create schemas.  :func:`cleanup` drops the schema with everything in it.
"""

from __future__ import annotations

import functools
import os
import uuid
from typing import Any

from gorelay_kombu.storage.postgres import PostgresStore
from gorelay_kombu.url import parse_store_url
from tests.conftest import require_server

URL = os.environ.get("GORELAY_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


@functools.lru_cache(maxsize=1)
def _probe() -> str:
    """Empty when the server answers, else why not."""
    import psycopg

    try:
        psycopg.connect(URL, connect_timeout=3).close()
    except psycopg.Error as exc:
        return str(exc).strip().splitlines()[0]
    return ""


def require_postgres() -> None:
    problem = _probe()
    require_server(f"PostgreSQL at {URL}", not problem, problem)


def new_schema() -> str:
    return f"gorelay_test_{uuid.uuid4().hex[:12]}"


def make_store(**options: Any) -> PostgresStore:
    require_postgres()
    options.setdefault("schema", new_schema())
    return PostgresStore(URL, options)


def make_url(schema: str | None = None) -> str:
    require_postgres()
    joiner = "&" if "?" in URL else "?"
    return f"gorelay+{URL}{joiner}schema={schema or new_schema()}"


def schema_of(target: PostgresStore | str) -> str:
    if isinstance(target, PostgresStore):
        return target.schema
    return parse_store_url(target).options["schema"]


def drop_schema(schema: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(URL, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def cleanup(target: PostgresStore | str) -> None:
    if isinstance(target, PostgresStore):
        target.close()
    drop_schema(schema_of(target))
