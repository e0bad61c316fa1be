"""Stores behind the transport; :func:`open_store` picks one by URL."""

from __future__ import annotations

import importlib
from typing import Any

from ..errors import InvalidOption, UnsupportedStore
from ..url import StoreURL, parse_store_url
from .base import DEAD, LEASED, READY, SCHEDULED, NewMessage, QueueStats, Reserved, Store, Waiter

__all__ = [
    "DEAD", "LEASED", "READY", "SCHEDULED",
    "NewMessage", "QueueStats", "Reserved", "STORES", "Store", "Waiter",
    "open_store", "store_class",
]


#: kind -> "module:Class"; a module that is not there yet means "not in this release".
STORES = {
    "sqlite": "gorelay_kombu.storage.sqlite:SQLiteStore",
    "memory": "gorelay_kombu.storage.memory:MemoryStore",
    "postgresql": "gorelay_kombu.storage.postgres:PostgresStore",
    "redis": "gorelay_kombu.storage.redis:RedisStore",
}


def store_class(kind: str) -> type[Store]:
    """The store class for ``kind`` (``sqlite``, ``memory``, ``postgresql``, ``redis``)."""
    module_name, _, class_name = STORES[kind].partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise  # the store module is there but its driver is not: let it say so
        raise UnsupportedStore(
            f"The {kind} store is not part of this release of gorelay-kombu yet; "
            "use the SQLite default (gorelay:// or gorelay+sqlite:///path.db) for now."
        ) from exc
    cls: type[Store] = getattr(module, class_name)
    return cls


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
    return store_class(parsed.kind)(parsed.location, merged)
