"""Stores behind the transport; :func:`open_store` picks one by URL."""

from __future__ import annotations

from typing import Any

from ..errors import InvalidOption, UnsupportedStore
from ..url import StoreURL, parse_store_url
from .base import DEAD, LEASED, READY, SCHEDULED, NewMessage, Reserved, Store, Waiter

__all__ = [
    "DEAD", "LEASED", "READY", "SCHEDULED",
    "NewMessage", "Reserved", "Store", "Waiter", "open_store",
]


def open_store(url: str | StoreURL, options: dict[str, Any] | None = None) -> Store:
    """Open the store named by ``url`` with ``options`` (store options only).

    Options given both in the URL's query string and in ``options`` must
    agree.
    """
    parsed = url if isinstance(url, StoreURL) else parse_store_url(url)
    merged: dict[str, Any] = dict(parsed.options)
    for key, value in (options or {}).items():
        if key in merged and str(merged[key]) != str(value):
            raise InvalidOption(
                f"Option {key!r} is set twice with different values: {merged[key]!r} in the "
                f"URL and {value!r} in transport_options. Keep one of them."
            )
        merged[key] = value
    if parsed.kind == "sqlite":
        from .sqlite import SQLiteStore

        return SQLiteStore(parsed.location, merged)
    if parsed.kind == "memory":
        from .memory import MemoryStore

        return MemoryStore(parsed.location, merged)
    raise UnsupportedStore(
        f"The {parsed.kind} store is not part of this release of gorelay-kombu yet; "
        "use the SQLite default (gorelay:// or gorelay+sqlite:///path.db) for now."
    )
