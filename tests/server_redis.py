"""Redis for the contract and kombu-level suites: each test under its own key prefix.

URL from ``GORELAY_TEST_REDIS_URL`` (default ``redis://127.0.0.1:6379/15``);
skips locally without a server, fails under ``CI=true``.  Cleanup deletes
the test's own prefix (never FLUSHDB: the database is shared).
"""

from __future__ import annotations

import os
import uuid
from urllib.parse import parse_qs, urlsplit

from tests.conftest import require_server

URL = os.environ.get("GORELAY_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")

_reachable: bool | None = None


def admin():
    """A plain redis-py client on the test database."""
    import redis

    return redis.Redis.from_url(URL, socket_connect_timeout=2, socket_timeout=10)


def _check() -> None:
    global _reachable
    if _reachable is None:
        try:
            admin().ping()
            _reachable = True
        except Exception:  # noqa: BLE001 - any failure means "no server"
            _reachable = False
    require_server("Redis", _reachable, URL)


def new_prefix() -> str:
    return f"gorelay-test-{uuid.uuid4().hex[:12]}:"


def make_store(prefix: str | None = None, url: str | None = None, **options):
    """A store on the test server (or on ``url``) under a fresh prefix."""
    from gorelay_kombu.storage.redis import RedisStore

    _check()
    key_prefix = new_prefix() if prefix is None else prefix
    return RedisStore(url or URL, {"key_prefix": key_prefix, **options})


def make_url() -> str:
    _check()
    separator = "&" if "?" in URL else "?"
    return f"gorelay+{URL}{separator}key_prefix={new_prefix()}"


def delete_prefix(prefix: str) -> int:
    client = admin()
    keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
    for i in range(0, len(keys), 500):
        client.delete(*keys[i:i + 500])
    return len(keys)


def cleanup(store_or_url) -> None:
    if isinstance(store_or_url, str):
        prefix = parse_qs(urlsplit(store_or_url).query)["key_prefix"][0]
    else:
        prefix = store_or_url.key_prefix
    delete_prefix(prefix)
