"""In-memory store: the unit-test double, with the same semantics as SQLite.

Features: everything the store contract requires, shared by every
connection in one process that names the same store; nothing survives the
process.  Simple rather than fast (reserve scans the queue).  The task
history is the SQLite one, over a private in-memory database per name.

URL: ``gorelay+memory://name`` (``name`` defaults to ``default``).
Options: none.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import InvalidOption
from ..priority import NORMAL
from .base import (
    DEAD,
    LEASED,
    READY,
    SCHEDULED,
    NewMessage,
    QueueStats,
    Reserved,
    Store,
    Waiter,
)
from .kv_values import incremented

if TYPE_CHECKING:
    from ..history import History


@dataclass
class _Row:
    id: int
    queue: str
    lane: int
    state: int
    visible_at: float
    payload: bytes
    owner: str | None = None
    deliveries: int = 0
    dead_reason: str | None = None
    expires_at: float | None = None
    created_at: float = 0.0


@dataclass
class _Queue:
    message_ttl: float | None
    expires: float | None
    last_used: float


@dataclass
class _State:
    lock: threading.Condition = field(default_factory=threading.Condition)
    ids: itertools.count = field(default_factory=lambda: itertools.count(1))
    queues: dict[str, _Queue] = field(default_factory=dict)
    rows: dict[int, _Row] = field(default_factory=dict)
    exchanges: dict[str, str] = field(default_factory=dict)
    bindings: dict[str, dict[tuple[str, str], str | None]] = field(default_factory=dict)
    kv: dict[str, tuple[bytes, float | None]] = field(default_factory=dict)
    version: int = 0
    #: woken by kv_set(notify=True) only, so results never wake queue consumers
    kv_cond: threading.Condition = field(default_factory=threading.Condition)
    kv_version: int = 0
    history: History | None = None


_STATES: dict[str, _State] = {}
_STATES_LOCK = threading.Lock()


class _MemoryWaiter(Waiter):
    """Woken when ``version()`` changes (read under ``cond``) or by :meth:`wake`."""

    def __init__(self, cond: threading.Condition, version: Callable[[], int]) -> None:
        self._cond, self._version = cond, version
        with cond:
            self._seen = version()
        self._woken = False

    def wait(self, timeout: float) -> bool:
        with self._cond:
            woke = self._cond.wait_for(
                lambda: self._woken or self._version() != self._seen,
                timeout=max(timeout, 0.0),
            )
            self._seen = self._version()
            self._woken = False
        return bool(woke)

    def wake(self) -> None:
        with self._cond:
            self._woken = True
            self._cond.notify_all()

    def close(self) -> None:
        pass


class MemoryStore(Store):
    """The in-process store; see the module docstring."""

    kind = "memory"
    wakes_on_publish = True

    def __init__(self, name: str = "default", options: dict[str, Any] | None = None) -> None:
        if options:
            raise InvalidOption(f"The memory store takes no options (got {sorted(options)}).")
        with _STATES_LOCK:
            self._s = _STATES.setdefault(name, _State())
        self.name = name

    @classmethod
    def forget(cls, name: str) -> None:
        """Drop the named store's contents (for tests)."""
        with _STATES_LOCK:
            _STATES.pop(name, None)

    def _changed(self) -> None:
        self._s.version += 1
        self._s.lock.notify_all()

    def declare_queue(
        self, queue: str, message_ttl: float | None = None, expires: float | None = None
    ) -> None:
        with self._s.lock:
            existing = self._s.queues.get(queue)
            if existing is None:
                self._s.queues[queue] = _Queue(message_ttl, expires, time.time())
            else:
                existing.last_used = time.time()

    def touch_queues(self, queues: Sequence[str]) -> None:
        with self._s.lock:
            for name in queues:
                if name in self._s.queues:
                    self._s.queues[name].last_used = time.time()

    def expire_idle_queues(self) -> list[str]:
        now = time.time()
        with self._s.lock:
            idle = [n for n, q in self._s.queues.items()
                    if q.expires is not None and q.last_used + q.expires <= now]
        for name in idle:
            self.delete_queue(name)
        return idle

    def has_queue(self, queue: str) -> bool:
        with self._s.lock:
            return queue in self._s.queues

    def delete_queue(self, queue: str) -> None:
        with self._s.lock:
            self._s.queues.pop(queue, None)
            for mid in [r.id for r in self._s.rows.values() if r.queue == queue]:
                del self._s.rows[mid]
            for table in self._s.bindings.values():
                for key in [k for k in table if k[1] == queue]:
                    del table[key]

    def put_many(self, messages: Sequence[NewMessage]) -> list[int]:
        now = time.time()
        ids = []
        with self._s.lock:
            for m in messages:
                mid = next(self._s.ids)
                state = SCHEDULED if m.visible_at > now else READY
                expiry = [t for t in (m.expires_at, self._ttl_expiry(m.queue, now)) if t]
                self._s.rows[mid] = _Row(
                    mid, m.queue, m.lane, state, max(m.visible_at, now), bytes(m.payload),
                    expires_at=min(expiry) if expiry else None, created_at=now,
                )
                ids.append(mid)
            self._changed()
        return ids

    def reserve(
        self, queues: Sequence[str], limit: int, owner: str, lease: float
    ) -> list[Reserved]:
        if limit <= 0 or not queues:
            return []
        now = time.time()
        rank = {q: i for i, q in enumerate(queues)}
        with self._s.lock:
            for mid in [r.id for r in self._s.rows.values()
                        if r.expires_at is not None and r.expires_at <= now
                        and r.state in (READY, SCHEDULED)]:
                del self._s.rows[mid]
            for r in self._s.rows.values():
                if r.state in (SCHEDULED, LEASED) and r.visible_at <= now:
                    r.state, r.owner = READY, None
            ready = sorted(
                (r for r in self._s.rows.values() if r.state == READY and r.queue in rank),
                key=lambda r: (r.lane, rank[r.queue], r.id),
            )[:limit]
            for r in ready:
                r.state, r.owner, r.visible_at = LEASED, owner, now + lease
                r.deliveries += 1
            result = [Reserved(r.id, r.queue, r.lane, r.payload, r.deliveries) for r in ready]
        result.sort(key=lambda m: (m.lane, m.id))
        return result

    def _ttl_expiry(self, queue: str, now: float) -> float | None:
        q = self._s.queues.get(queue)
        return None if q is None or q.message_ttl is None else now + q.message_ttl

    def ack(self, ids: Iterable[int]) -> None:
        with self._s.lock:
            for mid in ids:
                self._s.rows.pop(mid, None)

    def release(self, ids: Iterable[int], owner: str) -> None:
        now = time.time()
        with self._s.lock:
            for mid in ids:
                r = self._s.rows.get(mid)
                if r is not None and r.state == LEASED and r.owner == owner:
                    r.state, r.owner, r.visible_at = READY, None, now
            self._changed()

    def renew(self, owner: str, lease: float, ids: Iterable[int]) -> int:
        until = time.time() + lease
        count = 0
        with self._s.lock:
            for mid in ids:
                r = self._s.rows.get(mid)
                if r is not None and r.state == LEASED and r.owner == owner:
                    r.visible_at = until
                    count += 1
        return count

    def dead_letter(self, message_id: int, reason: str) -> None:
        with self._s.lock:
            r = self._s.rows.get(message_id)
            if r is not None:
                r.state, r.owner, r.dead_reason = DEAD, None, reason

    def dead_letters(self, queue: str) -> list[tuple[int, str, bytes]]:
        with self._s.lock:
            rows = sorted(
                (r for r in self._s.rows.values() if r.queue == queue and r.state == DEAD),
                key=lambda r: r.id,
            )
            return [(r.id, r.dead_reason or "", r.payload) for r in rows]

    def size(self, queue: str) -> int:
        with self._s.lock:
            return sum(
                1 for r in self._s.rows.values()
                if r.queue == queue and r.state in (READY, SCHEDULED)
            )

    def purge(self, queue: str) -> int:
        with self._s.lock:
            doomed = [
                r.id for r in self._s.rows.values()
                if r.queue == queue and r.state in (READY, SCHEDULED)
            ]
            for mid in doomed:
                del self._s.rows[mid]
            return len(doomed)

    def next_due(self) -> float | None:
        with self._s.lock:
            times = [r.visible_at for r in self._s.rows.values() if r.state in (SCHEDULED, LEASED)]
        return min(times) if times else None

    def waiter(self) -> Waiter:
        return _MemoryWaiter(self._s.lock, lambda: self._s.version)

    def declare_exchange(self, exchange: str, type: str) -> None:
        with self._s.lock:
            self._s.exchanges.setdefault(exchange, type)

    def exchange_type(self, exchange: str) -> str | None:
        with self._s.lock:
            return self._s.exchanges.get(exchange)

    def bind(self, exchange: str, routing_key: str, pattern: str | None, queue: str) -> None:
        with self._s.lock:
            self._s.bindings.setdefault(exchange, {}).setdefault((routing_key, queue), pattern)

    def unbind(self, exchange: str, routing_key: str, queue: str) -> None:
        with self._s.lock:
            self._s.bindings.get(exchange, {}).pop((routing_key, queue), None)

    def bindings(self, exchange: str) -> list[tuple[str, str | None, str]]:
        with self._s.lock:
            table = self._s.bindings.get(exchange, {})
            return [(rk, pattern, q) for (rk, q), pattern in table.items()]

    def _live(self, key: str, now: float) -> tuple[bytes, float | None] | None:
        """The unexpired item at ``key`` (call with the lock held)."""
        item = self._s.kv.get(key)
        if item is None or (item[1] is not None and item[1] <= now):
            return None
        return item

    def kv_get(self, key: str) -> bytes | None:
        with self._s.lock:
            item = self._live(key, time.time())
        return None if item is None else item[0]

    def kv_mget(self, keys: Sequence[str]) -> list[bytes | None]:
        now = time.time()
        with self._s.lock:
            items = [self._live(k, now) for k in keys]
        return [None if item is None else item[0] for item in items]

    def kv_set(
        self, key: str, value: bytes, ttl: float | None = None, notify: bool = False
    ) -> None:
        with self._s.lock:
            self._s.kv[key] = (bytes(value), None if ttl is None else time.time() + ttl)
        if notify:
            with self._s.kv_cond:
                self._s.kv_version += 1
                self._s.kv_cond.notify_all()

    def kv_delete(self, key: str) -> None:
        with self._s.lock:
            self._s.kv.pop(key, None)

    def kv_incr(self, key: str, amount: int = 1, ttl: float | None = None) -> int:
        now = time.time()
        with self._s.lock:
            item = self._live(key, now)
            value = incremented(None if item is None else item[0], amount, key)
            expires_at = (None if item is None else item[1]) if ttl is None else now + ttl
            self._s.kv[key] = (str(value).encode(), expires_at)
        return value

    def kv_add(self, key: str, value: bytes, ttl: float | None = None) -> bytes | None:
        now = time.time()
        with self._s.lock:
            item = self._live(key, now)
            if item is not None:
                return item[0]
            self._s.kv[key] = (bytes(value), None if ttl is None else now + ttl)
        return None

    def kv_expire(self, key: str, ttl: float | None) -> None:
        now = time.time()
        with self._s.lock:
            item = self._live(key, now)
            if item is not None:
                self._s.kv[key] = (item[0], None if ttl is None else now + ttl)

    def kv_purge_expired(self) -> int:
        now = time.time()
        with self._s.lock:
            doomed = [k for k, (_, exp) in self._s.kv.items() if exp is not None and exp <= now]
            for k in doomed:
                del self._s.kv[k]
        return len(doomed)

    def kv_waiter(self) -> Waiter:
        return _MemoryWaiter(self._s.kv_cond, lambda: self._s.kv_version)

    # -- inspection -------------------------------------------------------------
    def queue_stats(self) -> list[QueueStats]:
        now = time.time()
        # queue -> lane -> [ready, scheduled, leased, dead, oldest ready]
        table: dict[str, dict[int, list[Any]]] = {}
        with self._s.lock:
            for name in self._s.queues:
                table[name] = {}
            for r in self._s.rows.values():
                lanes = table.get(r.queue)
                if lanes is None:
                    continue
                if r.state in (READY, SCHEDULED) and r.expires_at is not None \
                        and r.expires_at <= now:
                    continue  # dropped at the next reserve
                row = lanes.setdefault(r.lane, [0, 0, 0, 0, None])
                if r.state == DEAD:
                    row[3] += 1
                elif r.state == READY or r.visible_at <= now:
                    row[0] += 1
                    row[4] = r.created_at if row[4] is None else min(row[4], r.created_at)
                else:
                    row[1 if r.state == SCHEDULED else 2] += 1
        stats = []
        for name in sorted(table):
            lanes = table[name] or {NORMAL: [0, 0, 0, 0, None]}
            for lane in sorted(lanes):
                stats.append(QueueStats(name, lane, *lanes[lane]))
        return stats

    def history(self) -> History:
        """The SQLite history over a private in-memory database, one per store name."""
        with _STATES_LOCK:
            if self._s.history is None:
                from ..history.sqlite import memory_history

                self._s.history = memory_history()
            return self._s.history

    def close(self) -> None:
        pass
