"""The Redis store's read-only inspection for the dashboard and /metrics: ``queue_stats``.

One ``STATS`` script per registered queue (see :mod:`.redis_lua`), all in one
pipeline: ready counts are the lanes' ``ZCARD``; scheduled, leased and dead
counts per lane come from the queue's ``cn`` hash, which every script keeps
exact (so nothing is scanned); the oldest ready message's put time is the
``pt`` entry of its lane's head.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from ..priority import NORMAL
from . import redis_lua as lua
from .base import QueueStats

STATS = lua.Script(lua.STATS)


class RedisInspect:
    """``queue_stats`` of :class:`~gorelay_kombu.storage.redis.RedisStore` (a mixin)."""

    _g: str
    _client: Callable[[], Any]
    _errors: Callable[..., Any]
    _keys: Callable[[str], list[str]]
    _batch: Callable[[Sequence[tuple[Any, ...]]], list[Any]]

    def queue_stats(self) -> list[QueueStats]:
        with self._errors():
            registered = self._client().smembers(self._g + "queues")
        names = sorted(raw.decode() for raw in registered)
        if not names:
            return []
        now = repr(time.time())
        replies = self._batch([(STATS, self._keys(q), [now]) for q in names])
        rows: list[QueueStats] = []
        for queue, reply in zip(names, replies, strict=True):
            found = False
            for lane in range(3):
                ready, scheduled, leased, dead = (int(n) for n in reply[1 + 5 * lane:5 + 5 * lane])
                oldest = reply[5 + 5 * lane]
                if ready or scheduled or leased or dead:
                    found = True
                    rows.append(QueueStats(queue, lane, ready, scheduled, leased, dead,
                                           float(oldest) if ready and oldest else None))
            if not found and int(reply[0]):  # declared, empty
                rows.append(QueueStats(queue, NORMAL, 0, 0, 0, 0, None))
        return rows
