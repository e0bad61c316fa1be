"""The store interface every gorelay store implements.

A store keeps three things, shared by every process that opens the same URL:

* **queues of leased messages**: ``put`` stores a message (invisible until
  its ``visible_at`` when that is in the future); ``reserve`` leases up to
  ``limit`` visible messages to an ``owner`` for ``lease`` seconds, high lane
  before normal before low, FIFO inside a lane; ``ack`` deletes, ``release``
  makes visible again at once, ``renew`` extends every lease an owner holds.
  A lease that is not renewed expires and its message becomes visible again:
  a consumer that dies loses nothing.
* **bindings**: exchanges and their ``(routing_key, pattern, queue)`` table,
  so fanout and topic routing work between processes.
* **key/value** with optional expiry, for results and small shared state.

Message states: ``READY`` (visible), ``SCHEDULED`` (ETA in the future),
``LEASED`` (held by a consumer until ``visible_at``), ``DEAD`` (poison or
out of retries; never delivered, kept with its reason).
"""

from __future__ import annotations

import abc
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, ClassVar

from ..errors import UnsupportedStore
from ..priority import NORMAL

if TYPE_CHECKING:
    from ..history import History

READY = 0
SCHEDULED = 1
LEASED = 2
DEAD = 3


@dataclass(frozen=True, slots=True)
class NewMessage:
    """A message to store: its queue, lane, body and when it becomes visible."""

    queue: str
    payload: bytes
    lane: int = NORMAL
    visible_at: float = 0.0
    #: epoch seconds after which an undelivered message is dropped (None: never)
    expires_at: float | None = None


@dataclass(frozen=True, slots=True)
class Reserved:
    """A message leased by :meth:`Store.reserve`."""

    id: int
    queue: str
    lane: int
    payload: bytes
    deliveries: int


@dataclass(frozen=True, slots=True)
class QueueStats:
    """What waits in one lane of one queue (see :meth:`Store.queue_stats`)."""

    queue: str
    lane: int
    ready: int
    scheduled: int
    leased: int
    dead: int
    #: epoch seconds at which the oldest ready message was stored (None: none ready)
    oldest_ready_at: float | None

    @classmethod
    def from_row(cls, r: Sequence[Any]) -> QueueStats:
        """From a SQL row ``(queue, lane or NULL, ready, scheduled, leased, dead, oldest)``."""
        return cls(r[0], NORMAL if r[1] is None else int(r[1]), int(r[2]), int(r[3]),
                   int(r[4]), int(r[5]), r[6])


class Waiter(abc.ABC):
    """Blocks until a store may have new visible messages."""

    @abc.abstractmethod
    def wait(self, timeout: float) -> bool:
        """Wait at most ``timeout`` seconds; return True when woken.

        It may also return False early, without a wake-up: callers re-check
        the store and wait again.
        """

    @abc.abstractmethod
    def wake(self) -> None:
        """Make a current or the next :meth:`wait` return at once (any thread)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release the waiter's resources."""


class Store(abc.ABC):
    """Queues with leases, shared bindings and key/value.

    Capability flags are class attributes; a store that lacks a feature says
    so there instead of silently doing nothing.
    """

    #: short name shown in errors and the dashboard (``sqlite``, ``memory``...)
    kind: ClassVar[str] = "abstract"
    #: the store's own option names, accepted in transport_options and the URL query;
    #: the constructor is ``Store(location, options)`` (see storage.open_store)
    options: ClassVar[frozenset[str]] = frozenset()
    #: True when :meth:`waiter` wakes promptly on a publish from any process.
    wakes_on_publish: ClassVar[bool] = False

    @abc.abstractmethod
    def __init__(self, location: str, options: dict[str, Any] | None = None) -> None:
        """Open the store at ``location`` (a file path, a name or a driver URL)."""

    # -- queues ---------------------------------------------------------------
    @abc.abstractmethod
    def declare_queue(
        self, queue: str, message_ttl: float | None = None, expires: float | None = None
    ) -> None:
        """Create ``queue`` if it does not exist (idempotent; the first arguments win).

        ``message_ttl``: seconds a message waits before it is dropped (AMQP
        ``x-message-ttl``).  ``expires``: seconds without use after which the
        queue, its messages and bindings are deleted (``x-expires``); consumers
        keep it alive with :meth:`touch_queues`.
        """

    @abc.abstractmethod
    def touch_queues(self, queues: Sequence[str]) -> None:
        """Mark ``queues`` as in use now (for ``expires``)."""

    @abc.abstractmethod
    def expire_idle_queues(self) -> list[str]:
        """Delete queues unused for longer than their ``expires``; return their names."""

    def maintain(self) -> None:
        """Periodic upkeep, called about once a second by every consuming process.

        The base version expires idle queues; stores with logs to compact
        (SQLite's WAL) extend it.
        """
        self.expire_idle_queues()

    @abc.abstractmethod
    def has_queue(self, queue: str) -> bool:
        """Return True if ``queue`` was declared."""

    @abc.abstractmethod
    def delete_queue(self, queue: str) -> None:
        """Delete ``queue``, its messages (any state) and its bindings."""

    @abc.abstractmethod
    def put_many(self, messages: Sequence[NewMessage]) -> list[int]:
        """Store ``messages`` in one commit and return their ids.

        Returns only after the commit: a returned message survives a crash of
        this process.
        """

    def put(self, message: NewMessage) -> int:
        """Store one message; see :meth:`put_many`."""
        return self.put_many([message])[0]

    def put_routed(self, exchange: str, routing_key: str, message: NewMessage) -> int:
        """Store ``message`` in every queue bound to ``exchange`` with exactly
        ``routing_key`` (direct routing), in one commit; return how many queues.

        ``message.queue`` is ignored.  This default reads :meth:`bindings`
        first; server stores override it to route and insert in one round
        trip, so publishing never works from a stale copy of the bindings.
        """
        queues = sorted({q for rk, _, q in self.bindings(exchange) if rk == routing_key})
        if queues:
            self.put_many([replace(message, queue=q) for q in queues])
        return len(queues)

    @abc.abstractmethod
    def reserve(
        self, queues: Sequence[str], limit: int, owner: str, lease: float
    ) -> list[Reserved]:
        """Lease up to ``limit`` visible messages from ``queues`` to ``owner``.

        Messages whose ETA has come or whose lease expired become visible
        first; waiting messages past their ``expires_at`` are dropped.  The
        result is ordered high lane first, then by id; across queues the
        lanes still decide.
        """

    @abc.abstractmethod
    def ack(self, ids: Iterable[int]) -> None:
        """Delete messages for good (idempotent)."""

    @abc.abstractmethod
    def release(self, ids: Iterable[int], owner: str) -> None:
        """Make messages ``owner`` still leases visible again at once."""

    @abc.abstractmethod
    def renew(self, owner: str, lease: float, ids: Iterable[int]) -> int:
        """Extend the leases ``owner`` holds on ``ids`` to ``lease`` seconds from now.

        Returns how many were renewed; an id ``owner`` no longer leases is skipped.
        """

    @abc.abstractmethod
    def dead_letter(self, message_id: int, reason: str) -> None:
        """Move a message to the dead state with ``reason``; never delivered."""

    @abc.abstractmethod
    def dead_letters(self, queue: str) -> list[tuple[int, str, bytes]]:
        """``(id, reason, payload)`` of the dead messages of ``queue``, oldest first."""

    @abc.abstractmethod
    def size(self, queue: str) -> int:
        """Messages waiting in ``queue``: ready or scheduled, not leased."""

    @abc.abstractmethod
    def purge(self, queue: str) -> int:
        """Delete the ready and scheduled messages of ``queue``; return the count."""

    @abc.abstractmethod
    def next_due(self) -> float | None:
        """Epoch time at which the next scheduled or leased message turns visible."""

    @abc.abstractmethod
    def waiter(self) -> Waiter:
        """A :class:`Waiter` for this process; create it before checking for work."""

    # -- bindings -------------------------------------------------------------
    @abc.abstractmethod
    def declare_exchange(self, exchange: str, type: str) -> None:
        """Record ``exchange`` and its type (idempotent; first type wins)."""

    @abc.abstractmethod
    def exchange_type(self, exchange: str) -> str | None:
        """The declared type of ``exchange`` or None."""

    @abc.abstractmethod
    def bind(self, exchange: str, routing_key: str, pattern: str | None, queue: str) -> None:
        """Add a binding (idempotent)."""

    @abc.abstractmethod
    def unbind(self, exchange: str, routing_key: str, queue: str) -> None:
        """Remove a binding (idempotent)."""

    @abc.abstractmethod
    def bindings(self, exchange: str) -> list[tuple[str, str | None, str]]:
        """The ``(routing_key, pattern, queue)`` table of ``exchange``."""

    # -- key/value ------------------------------------------------------------
    @abc.abstractmethod
    def kv_get(self, key: str) -> bytes | None:
        """The value at ``key``, or None if absent or expired."""

    @abc.abstractmethod
    def kv_set(
        self, key: str, value: bytes, ttl: float | None = None, notify: bool = False
    ) -> None:
        """Store ``value`` at ``key``; it expires ``ttl`` seconds from now if given.

        ``notify``: after the commit, wake every :meth:`kv_waiter` of every
        process (results use it so ``AsyncResult.get()`` returns at once).
        """

    @abc.abstractmethod
    def kv_delete(self, key: str) -> None:
        """Remove ``key`` (idempotent)."""

    @abc.abstractmethod
    def kv_mget(self, keys: Sequence[str]) -> list[bytes | None]:
        """:meth:`kv_get` of each of ``keys``, in one round trip."""

    @abc.abstractmethod
    def kv_incr(self, key: str, amount: int = 1, ttl: float | None = None) -> int:
        """Atomically add ``amount`` to the integer at ``key`` (absent or expired: 0)
        and return the new value; exactly one caller sees each value, whatever the
        number of processes.  The value is stored as ASCII digits (``kv_get``
        returns ``b"3"``).  ``ttl`` (if given) resets the key's expiry.
        """

    @abc.abstractmethod
    def kv_add(self, key: str, value: bytes, ttl: float | None = None) -> bytes | None:
        """Store ``value`` at ``key`` only if ``key`` is absent or expired, atomically
        across processes.  Return None when stored, else the value already there
        (which is left untouched).
        """

    @abc.abstractmethod
    def kv_expire(self, key: str, ttl: float | None) -> None:
        """Set (or with None clear) the expiry of an existing ``key``; absent: no-op."""

    @abc.abstractmethod
    def kv_purge_expired(self) -> int:
        """Delete every expired key for good; return how many."""

    @abc.abstractmethod
    def kv_waiter(self) -> Waiter:
        """A :class:`Waiter` woken by ``kv_set(..., notify=True)`` from any process.

        Create it before the first check of the key waited for; any notifying
        set wakes it, so callers re-check their keys and wait again.
        """

    # -- inspection (read-only, for the dashboard and /metrics) ----------------
    @abc.abstractmethod
    def queue_stats(self) -> list[QueueStats]:
        """One :class:`QueueStats` per declared queue and lane holding messages
        (a declared queue with no messages gets one row with lane NORMAL and
        zeros), sorted by queue then lane.
        """

    def history(self) -> History:
        """The task history kept in this store (shares this store's connections)."""
        raise UnsupportedStore(f"The {self.kind} store keeps no task history yet.")

    # -- lifecycle ------------------------------------------------------------
    @abc.abstractmethod
    def close(self) -> None:
        """Close connections held by this store object."""
