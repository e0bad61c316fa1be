"""The Celery result backend on a gorelay store: ``result_backend = "gorelay://"``.

Registered in Celery's ``celery.result_backends`` entry-point group under
``gorelay``, so any broker URL form works as a backend URL too
(``gorelay+sqlite:///relay.db``, ``gorelay+postgresql://…``,
``gorelay+redis://…``); with the broker on the same URL, one store holds
queues, results and history.

Results live in the store's key/value space with ``result_expires`` as
their expiry (``celery.backend_cleanup`` and the workers' upkeep delete
expired ones).  Chords join with the store's atomic counter (one join
whatever the number of workers).  ``AsyncResult.get()`` waits on the
store's result notifications (doorbell, LISTEN/NOTIFY or pub/sub) instead
of a fixed poll; ``interval`` is only the fallback if a notification is
lost.

Options (Celery settings): ``result_backend_transport_options`` may hold
the store's own options (``schema``, ``key_prefix``, ``synchronous``…);
``gorelay_result_max_bytes`` (default 16 MiB) bounds one stored result: a
larger one fails its task with :class:`ResultTooLarge` and leaves the
worker running.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

from celery import states
from celery.backends.base import KeyValueStoreBackend
from celery.exceptions import TimeoutError as CeleryTimeoutError
from kombu.utils.encoding import bytes_to_str
from kombu.utils.url import maybe_sanitize_url

from ..errors import GoRelayError
from ..storage import Store, Waiter
from .stores import gorelay_url, shared_store, store_options

DEFAULT_RESULT_MAX_BYTES = 16 * 1024 * 1024


class ResultTooLarge(GoRelayError, ValueError):
    """A task result is larger than ``gorelay_result_max_bytes``; it was not stored."""


def _key(key: bytes | str) -> str:
    return bytes_to_str(key)


class GoRelayBackend(KeyValueStoreBackend):
    """Celery result backend over a gorelay store's key/value space."""

    supports_autoexpire = True
    supports_native_join = True
    implements_incr = True
    persistent = True

    def __init__(self, url: str | None = None, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        from .. import ON_TRANSPORT_INIT

        ON_TRANSPORT_INIT[:] = [hook for hook in ON_TRANSPORT_INIT if not hook()]
        conf = self.app.conf
        self.url = gorelay_url(url or conf.result_backend or "gorelay://")
        self._options = store_options(
            self.url, conf.get("result_backend_transport_options") or {},
            "result_backend_transport_options",
        )
        self.max_bytes = int(conf.get("gorelay_result_max_bytes") or DEFAULT_RESULT_MAX_BYTES)
        self._waiters = threading.local()

    @property
    def store(self) -> Store:
        return shared_store(self.url, self._options)

    # -- the key/value hooks KeyValueStoreBackend needs -------------------------
    def get(self, key: bytes | str) -> bytes | None:
        return self.store.kv_get(_key(key))

    def mget(self, keys: list[bytes | str]) -> list[bytes | None]:
        return self.store.kv_mget([_key(k) for k in keys])

    def set(self, key: bytes | str, value: bytes | str) -> None:
        data = value.encode() if isinstance(value, str) else value
        if len(data) > self.max_bytes:
            raise ResultTooLarge(
                f"The result of {_key(key)!r} is {len(data):,} bytes, over "
                f"gorelay_result_max_bytes ({self.max_bytes:,}). Return a reference (a file "
                "path, a URL) instead, or raise gorelay_result_max_bytes."
            )
        self.store.kv_set(_key(key), data, ttl=self.expires or None, notify=True)

    def delete(self, key: bytes | str) -> None:
        self.store.kv_delete(_key(key))

    def incr(self, key: bytes | str) -> int:
        return self.store.kv_incr(_key(key), 1, ttl=self.chord_expires or None)

    def expire(self, key: bytes | str, value: float | None) -> None:
        self.store.kv_expire(_key(key), value or None)

    def cleanup(self) -> None:
        """Delete expired results (Celery beat's ``celery.backend_cleanup`` calls this)."""
        self.store.kv_purge_expired()

    # -- waiting without a fixed poll --------------------------------------------
    def _waiter(self) -> Waiter:
        waiter: Waiter | None = getattr(self._waiters, "waiter", None)
        if waiter is None:
            waiter = self._waiters.waiter = self.store.kv_waiter()
        return waiter

    def wait_for(self, task_id: str, timeout: float | None = None, interval: float = 0.5,
                 no_ack: bool = True, on_interval: Any = None) -> dict[str, Any]:
        self._ensure_not_eager()
        waiter = self._waiter()  # before the first look: a result stored after it wakes it
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            meta: dict[str, Any] = self.get_task_meta(task_id)
            if meta["status"] in states.READY_STATES:
                return meta
            if on_interval:
                on_interval()
            left = _left(deadline)
            if left is not None and left <= 0:
                raise CeleryTimeoutError("The operation timed out.")
            waiter.wait(interval if left is None else min(interval, left))

    def get_many(self, task_ids: Any, timeout: float | None = None, interval: float = 0.5,
                 no_ack: bool = True, on_message: Any = None, on_interval: Any = None,
                 max_iterations: int | None = None,
                 READY_STATES: frozenset[str] = states.READY_STATES,
                 ) -> Iterator[tuple[str, dict[str, Any]]]:
        waiter = self._waiter()
        ids = {bytes_to_str(t) for t in task_ids}
        deadline = None if timeout is None else time.monotonic() + timeout
        rounds = 0
        while ids:
            # one look at the store (interval=0, one iteration), then wait for a result
            for task_id, meta in super().get_many(
                    set(ids), interval=0, no_ack=no_ack, on_message=on_message,
                    max_iterations=1, READY_STATES=READY_STATES):
                ids.discard(task_id)
                yield task_id, meta
            if not ids:
                return
            left = _left(deadline)
            if left is not None and left <= 0:
                raise CeleryTimeoutError(f"Operation timed out ({timeout})")
            if on_interval:
                on_interval()
            waiter.wait(interval if left is None else min(interval, left))
            rounds += 1
            if max_iterations and rounds >= max_iterations:
                return

    # -- Celery plumbing -------------------------------------------------------
    def as_uri(self, include_password: bool = False) -> str:
        return self.url if include_password else str(maybe_sanitize_url(self.url))

    def __reduce__(self, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None
                   ) -> Any:
        return super().__reduce__(args, dict(kwargs or {}, url=self.url))


def _left(deadline: float | None) -> float | None:
    return None if deadline is None else deadline - time.monotonic()
