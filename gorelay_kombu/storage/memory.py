"""In-memory store: the unit-test double, with the same semantics as SQLite.

Features: everything the store contract requires, shared by every
connection in one process that names the same store; nothing survives the
process.  Simple rather than fast (reserve scans the queue).

URL: ``gorelay+memory://name`` (``name`` defaults to ``default``).
Options: none.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import InvalidOption
from .base import DEAD, LEASED, READY, SCHEDULED, NewMessage, Reserved, Store, Waiter


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


_STATES: dict[str, _State] = {}
_STATES_LOCK = threading.Lock()


class _MemoryWaiter(Waiter):
    def __init__(self, state: _State) -> None:
        self._state = state
        self._seen = state.version
        self._woken = False

    def wait(self, timeout: float) -> bool:
        with self._state.lock:
            woke = self._state.lock.wait_for(
                lambda: self._woken or self._state.version != self._seen,
                timeout=max(timeout, 0.0),
            )
            self._seen = self._state.version
            self._woken = False
        return bool(woke)

    def wake(self) -> None:
        with self._state.lock:
            self._woken = True
            self._state.lock.notify_all()

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
                    expires_at=min(expiry) if expiry else None,
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
        return _MemoryWaiter(self._s)

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

    def kv_get(self, key: str) -> bytes | None:
        with self._s.lock:
            item = self._s.kv.get(key)
        if item is None or (item[1] is not None and item[1] <= time.time()):
            return None
        return item[0]

    def kv_set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        with self._s.lock:
            self._s.kv[key] = (bytes(value), None if ttl is None else time.time() + ttl)

    def kv_delete(self, key: str) -> None:
        with self._s.lock:
            self._s.kv.pop(key, None)

    def close(self) -> None:
        pass
