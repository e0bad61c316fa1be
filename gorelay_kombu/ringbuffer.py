"""The in-process priority layer: one bounded ring buffer per lane.

A channel's reserves fill it in batches (one store query leases up to the
prefetch window) and kombu's consumers drain it one message at a time,
always high lane before normal before low.

Each lane is a ``collections.deque`` (CPython's deque is a ring of fixed
blocks) with a hard capacity: the channel never leases more than a lane can
hold.  Why this beats the alternatives on this workload (``python
bench/ringbuffer_bench.py``):

* the store returns a batch already sorted by lane, so :meth:`LaneRing.extend`
  moves each run of one lane with a single C-level ``deque.extend``;
* :meth:`LaneRing.pop` is at most three truth tests and one C-level
  ``popleft``: no heap, no tuple comparisons, no lock (only the consuming
  thread touches it), where ``queue.PriorityQueue`` pays a lock and an
  O(log n) heap operation per item, and ``heapq`` the heap alone;
* a ring of Python list slots with head/count indexes (our first design)
  costs about ten attribute and index operations per pop in the interpreter,
  so it loses to the deque's C loop.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from itertools import groupby, islice
from operator import itemgetter
from typing import Generic, TypeVar

T = TypeVar("T")

_lane_of = itemgetter(0)
_item_of = itemgetter(1)


class LaneRing(Generic[T]):
    """Bounded FIFO rings, one per lane (0 high, 1 normal, 2 low), served in lane order.

    Args:
        capacity: slots per lane (rounded up to a power of two).
    """

    __slots__ = ("_high", "_normal", "_low", "_lanes", "capacity")

    def __init__(self, capacity: int = 128) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = 1 << (capacity - 1).bit_length()
        self._high: deque[T] = deque()
        self._normal: deque[T] = deque()
        self._low: deque[T] = deque()
        self._lanes = (self._high, self._normal, self._low)

    def __len__(self) -> int:
        return len(self._high) + len(self._normal) + len(self._low)

    def free(self, lane: int) -> int:
        """Free slots in ``lane``."""
        return self.capacity - len(self._lanes[lane])

    def push(self, lane: int, item: T) -> None:
        """Append ``item`` to ``lane``; raises OverflowError when it is full."""
        ring = self._lanes[lane]
        if len(ring) >= self.capacity:
            raise OverflowError(f"lane {lane} is full ({self.capacity} items)")
        ring.append(item)

    def extend(self, items: Iterable[tuple[int, T]]) -> None:
        """Push ``(lane, item)`` pairs in order, one ``deque.extend`` per run of a lane.

        Raises OverflowError when a lane fills up; the items before stay pushed.
        """
        lanes, capacity = self._lanes, self.capacity
        for lane, run in groupby(items, _lane_of):
            ring = lanes[lane]
            ring.extend(islice(map(_item_of, run), capacity - len(ring)))
            if next(run, None) is not None:  # noqa: B031 - what did not fit
                raise OverflowError(f"lane {lane} is full ({capacity} items)")

    def pop(self) -> T | None:
        """Remove and return the oldest item of the most urgent lane, or None."""
        if self._high:
            return self._high.popleft()
        if self._normal:
            return self._normal.popleft()
        if self._low:
            return self._low.popleft()
        return None

    def drain(self) -> Iterator[T]:
        """Pop everything, in service order."""
        for ring in self._lanes:
            while ring:
                yield ring.popleft()
