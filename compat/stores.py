"""One store object per URL and process for the Celery layer.

The result backend, the history recorder and the worker registry of one
process share it (and so share its connections); a forked child opens its
own on first use, since connections must not cross a fork.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from ..errors import InvalidOption
from ..storage import Store, open_store, store_class
from ..url import parse_store_url

_lock = threading.Lock()
_stores: dict[tuple[str, tuple[tuple[str, str], ...]], tuple[int, Store]] = {}

#: Celery's own option names that may sit in *_transport_options beside ours
CELERY_OPTIONS = frozenset({
    "global_keyprefix", "retry_policy", "max_retries", "interval_start", "interval_step",
    "interval_max", "visibility_timeout", "polling_interval", "max_message_bytes",
    "reserve_batch", "confirm_publish", "socket_timeout", "socket_connect_timeout",
    "client_name", "body_encoding", "deadletter_queue", "result_chord_ordered",
})


def gorelay_url(url: str) -> str:
    """``url`` with the ``gorelay+`` prefix Celery's backend lookup strips off."""
    return url if url.startswith("gorelay") else f"gorelay+{url}"


def store_options(url: str, options: dict[str, Any] | None, setting: str) -> dict[str, Any]:
    """The store's own options among ``options`` (from the Celery ``setting``)."""
    known = store_class(parse_store_url(url).kind).options
    unknown = sorted(set(options or {}) - known - CELERY_OPTIONS)
    if unknown:
        raise InvalidOption(
            f"Unknown option(s) {unknown} in {setting} for {url.split('://')[0]}. "
            f"Known store options: {sorted(known)}."
        )
    return {k: v for k, v in (options or {}).items() if k in known}


def shared_store(url: str, options: dict[str, Any] | None = None) -> Store:
    """The store of this process for ``url`` and store ``options``."""
    key = (url, tuple(sorted((k, str(v)) for k, v in (options or {}).items())))
    pid = os.getpid()
    with _lock:
        found = _stores.get(key)
        if found is not None and found[0] == pid:
            return found[1]
        store = open_store(url, options)
        _stores[key] = (pid, store)
        return store
