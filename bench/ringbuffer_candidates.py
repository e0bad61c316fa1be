"""The first LaneRing design, kept for ``bench/ringbuffer_bench.py`` to show why it lost.

:class:`IndexRing` keeps LaneRing's interface and semantics (bounded lanes,
FIFO per lane, strict lane order) on Python list slots with head/count
indexes.  Each pop costs about ten attribute and subscript operations in the
interpreter, against one C-level ``deque.popleft`` in the shipped LaneRing.

``python bench/ringbuffer_candidates.py`` checks that it serves the same
order as LaneRing on random operations.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class IndexRing(Generic[T]):
    """The first shipped design: Python list slots with head/count indexes."""

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
        self._slots: list[list[T | None]] = [[None] * size for _ in range(3)]
        self._heads = [0 for _ in range(3)]
        self._counts = [0 for _ in range(3)]
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


def _selfcheck() -> None:
    from gorelay_kombu.ringbuffer import LaneRing

    rng = random.Random(7)
    for _ in range(300):
        ref: LaneRing[int] = LaneRing(8)
        cand: IndexRing[int] = IndexRing(8)
        for step in range(40):
            if rng.random() < 0.5:
                lane = rng.randrange(3)
                if ref.free(lane):
                    ref.push(lane, step)
                    cand.push(lane, step)
            else:
                assert ref.pop() == cand.pop()
            assert len(ref) == len(cand)
    print("ringbuffer_candidates: self-check passed")


if __name__ == "__main__":
    _selfcheck()
