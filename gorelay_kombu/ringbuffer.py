"""The in-process priority layer: one bounded ring buffer per lane.

A channel's reserves fill it in batches (one store query leases up to the
prefetch window) and kombu's consumers drain it one message at a time,
always high lane before normal before low.  Each lane is a fixed list used
as a ring (head index and count), so steady-state operation allocates
nothing, capacity is a hard bound (the channel never leases more than it can
hold), and :meth:`LaneRing.pop` is a few index operations, with no lock and
no heap: only the consuming thread touches it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Generic, TypeVar

from .priority import LANES

T = TypeVar("T")


class LaneRing(Generic[T]):
    """Bounded FIFO rings, one per lane, served in lane order.

    Args:
        capacity: slots per lane (rounded up to a power of two).
    """

    __slots__ = ("_slots", "_heads", "_counts", "_mask", "_size", "capacity")

    def __init__(self, capacity: int = 128) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        size = 1 << (capacity - 1).bit_length()
        self.capacity = size
        self._mask = size - 1
        self._slots: list[list[T | None]] = [[None] * size for _ in LANES]
        self._heads = [0 for _ in LANES]
        self._counts = [0 for _ in LANES]
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def free(self, lane: int) -> int:
        """Free slots in ``lane``."""
        return self.capacity - self._counts[lane]

    def push(self, lane: int, item: T) -> None:
        """Append ``item`` to ``lane``; raises OverflowError when it is full."""
        count = self._counts[lane]
        if count == self.capacity:
            raise OverflowError(f"lane {lane} is full ({self.capacity} items)")
        self._slots[lane][(self._heads[lane] + count) & self._mask] = item
        self._counts[lane] = count + 1
        self._size += 1

    def extend(self, items: Iterable[tuple[int, T]]) -> None:
        """Push ``(lane, item)`` pairs in order."""
        for lane, item in items:
            self.push(lane, item)

    def pop(self) -> T | None:
        """Remove and return the oldest item of the most urgent lane, or None."""
        if not self._size:
            return None
        counts = self._counts
        lane = 0 if counts[0] else (1 if counts[1] else 2)
        slots = self._slots[lane]
        head = self._heads[lane]
        item = slots[head]
        slots[head] = None
        self._heads[lane] = (head + 1) & self._mask
        counts[lane] -= 1
        self._size -= 1
        return item

    def drain(self) -> Iterator[T]:
        """Pop everything, in service order."""
        while self._size:
            item = self.pop()
            if item is not None:
                yield item
