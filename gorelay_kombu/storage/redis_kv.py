"""The Redis store's key/value half: results, counters and their wake-ups.

Every key lives at ``P kv:<key>`` (``P`` the store's prefix) as a plain
Redis string, so expiry is Redis's own (``PX``): an expired key is gone
for every reader at once and ``kv_purge_expired`` has nothing left to do.
``kv_set(..., notify=True)`` publishes on the channel ``P kv-wake``, apart
from the queues' wake channel so result waiters and consumers never wake
each other; :meth:`RedisKeyValue.kv_waiter` subscribes to it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from ..errors import StoreError
from . import redis_lua as lua
from .base import Waiter
from .redis_waiter import RedisWaiter


def _ms(ttl: float) -> int:
    """A positive TTL in whole milliseconds (at least 1, so it never means "no expiry")."""
    return max(int(ttl * 1000), 1)


class RedisKeyValue:
    """Key/value methods of :class:`~gorelay_kombu.storage.redis.RedisStore` (a mixin)."""

    key_prefix: str
    socket_timeout: float
    _client: Callable[[], Any]
    _errors: Callable[[], contextlib.AbstractContextManager[None]]
    _eval: Callable[..., Any]

    def _kv(self, key: str) -> str:
        return f"{self.key_prefix}kv:{key}"

    @property
    def kv_channel(self) -> str:
        return f"{self.key_prefix}kv-wake"

    @contextlib.contextmanager
    def _kv_call(self) -> Iterator[Any]:
        with self._errors():
            yield self._client()

    def kv_get(self, key: str) -> bytes | None:
        with self._kv_call() as client:
            value = client.get(self._kv(key))
        return None if value is None else bytes(value)

    def kv_set(
        self, key: str, value: bytes, ttl: float | None = None, notify: bool = False
    ) -> None:
        with self._kv_call() as client:
            pipe = client.pipeline(transaction=False)
            if ttl is None:
                pipe.set(self._kv(key), value)
            elif ttl <= 0:
                pipe.delete(self._kv(key))
            else:
                pipe.set(self._kv(key), value, px=_ms(ttl))
            if notify:  # after the write, in the same round trip
                pipe.publish(self.kv_channel, b"1")
            pipe.execute()

    def kv_delete(self, key: str) -> None:
        with self._kv_call() as client:
            client.delete(self._kv(key))

    def kv_mget(self, keys: Sequence[str]) -> list[bytes | None]:
        if not keys:
            return []
        with self._kv_call() as client:
            values = client.mget([self._kv(k) for k in keys])
        return [None if v is None else bytes(v) for v in values]

    def kv_incr(self, key: str, amount: int = 1, ttl: float | None = None) -> int:
        with self._kv_call() as client:
            pipe = client.pipeline(transaction=True)  # MULTI: the expiry goes with the add
            pipe.incrby(self._kv(key), int(amount))
            if ttl is not None:
                if ttl <= 0:
                    pipe.delete(self._kv(key))
                else:
                    pipe.pexpire(self._kv(key), _ms(ttl))
            try:
                return int(pipe.execute()[0])
            except Exception as exc:  # a redis ResponseError; others go to _errors
                if "not an integer" not in str(exc):
                    raise
                raise StoreError(
                    f"kv_incr({key!r}): the value there is not an integer, or the sum "
                    "leaves 64 bits. Delete the key or use another key for the counter."
                ) from exc

    def kv_add(self, key: str, value: bytes, ttl: float | None = None) -> bytes | None:
        ms = "" if ttl is None else str(_ms(ttl) if ttl > 0 else 0)
        found = self._eval(KV_ADD, [self._kv(key)], [value, ms])
        return bytes(found[0]) if found else None

    def kv_expire(self, key: str, ttl: float | None) -> None:
        with self._kv_call() as client:
            if ttl is None:
                client.persist(self._kv(key))
            elif ttl <= 0:
                client.delete(self._kv(key))
            else:
                client.pexpire(self._kv(key), _ms(ttl))

    def kv_purge_expired(self) -> int:
        """Nothing to do: Redis deletes expired keys itself and never returns them."""
        return 0

    def kv_waiter(self) -> Waiter:
        return RedisWaiter(self._client().pubsub(), self.kv_channel, self._errors,
                           max(self.socket_timeout, 1.0))


KV_ADD = lua.Script(lua.KV_ADD)
