"""Alternative designs for :class:`gorelay_kombu.ringbuffer.LaneRing`.

* :class:`IndexRing`: the first shipped design (lists with head/count
  indexes), kept to show why it lost.

Both keep LaneRing's interface and semantics: ``capacity`` (slots per lane,
rounded up to a power of two), ``push(lane, item)`` raising OverflowError on
a full lane, ``extend(pairs)`` (pushes in order; on overflow the items
before the failing one stay pushed, as with LaneRing), ``pop()`` (oldest item
of the most urgent non-empty lane, or None), ``drain()``, ``free(lane)``,
``len()``; FIFO per lane, strict lane order 0 (high) -> 1 -> 2 (low).

* :class:`DequeLaneRing`: one ``collections.deque`` per lane.  ``popleft``
  and ``append`` are single C calls, so pop/push cost two or three
  attribute loads instead of LaneRing's ~10 attribute and subscript
  operations; capacity is enforced by ``len(deque)`` (O(1)).
* :class:`BatchDequeLaneRing` (now shipped as LaneRing): plus a batch ``extend`` that moves
  each run of equal lanes (the store returns rows sorted by lane) with one
  ``deque.extend`` call.

``python bench/ringbuffer_candidates.py`` runs a semantics self-check
(the cases of tests/unit/test_ringbuffer.py plus a randomized comparison
with LaneRing).
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Iterable, Iterator
from itertools import groupby, islice
from operator import itemgetter
from typing import Any, Generic, TypeVar

T = TypeVar("T")
_lane_of = itemgetter(0)
_item_of = itemgetter(1)


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


class DequeLaneRing(Generic[T]):
    """Bounded FIFO deques, one per lane, served in lane order."""

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
        queue = self._lanes[lane]
        if len(queue) >= self.capacity:
            raise OverflowError(f"lane {lane} is full ({self.capacity} items)")
        queue.append(item)

    def extend(self, items: Iterable[tuple[int, T]]) -> None:
        """Push ``(lane, item)`` pairs in order."""
        push = self.push
        for lane, item in items:
            push(lane, item)

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
        pop = self.pop
        while len(self):
            item = pop()
            if item is not None:  # as LaneRing.drain: stored None items are skipped
                yield item


class BatchDequeLaneRing(DequeLaneRing[T]):
    """DequeLaneRing whose ``extend`` moves each run of one lane at once."""

    __slots__ = ()

    def extend(self, items: Iterable[tuple[int, T]]) -> None:
        """Push ``(lane, item)`` pairs in order (fast for runs of one lane)."""
        lanes, capacity = self._lanes, self.capacity
        for lane, run in groupby(items, _lane_of):
            queue = lanes[lane]
            room = capacity - len(queue)
            queue.extend(islice(map(_item_of, run), room))
            if next(run, None) is not None:  # noqa: B031 - islice stopped early: full
                raise OverflowError(f"lane {lane} is full ({capacity} items)")


def _selfcheck() -> None:
    from gorelay_kombu.ringbuffer import LaneRing

    high, normal, low = 0, 1, 2
    classes: tuple[type[DequeLaneRing[Any]], ...] = (DequeLaneRing, BatchDequeLaneRing)
    for cls in classes:
        ring: DequeLaneRing[Any] = cls(4)
        ring.extend([(low, "l1"), (normal, "n1"), (high, "h1"), (low, "l2"), (high, "h2")])
        assert len(ring) == 5
        assert [ring.pop() for _ in range(6)] == ["h1", "h2", "n1", "l1", "l2", None]
        ring = cls(3)
        assert ring.capacity == 4
        for round_ in range(5):
            for i in range(4):
                ring.push(normal, round_ * 10 + i)
            assert ring.free(normal) == 0 and ring.free(high) == 4
            try:
                ring.push(normal, -1)
            except OverflowError:
                pass
            else:
                raise AssertionError("push on a full lane must raise")
            assert list(ring.drain()) == [round_ * 10 + i for i in range(4)]
        ring = cls(8)
        ring.extend([(low, "l1"), (low, "l2")])
        assert ring.pop() == "l1"
        ring.push(high, "h")
        assert [ring.pop(), ring.pop()] == ["h", "l2"]
        try:
            cls(0)
        except ValueError:
            pass
        else:
            raise AssertionError("capacity 0 must raise")
        # randomized: identical to LaneRing, including partial extend on overflow
        rng = random.Random(7)
        for _ in range(300):
            ref: LaneRing[int] = LaneRing(8)
            cand: DequeLaneRing[int] = cls(8)
            for _ in range(40):
                if rng.random() < 0.5:
                    pairs = sorted((rng.choice((0, 1, 1, 1, 2)), rng.randrange(99))
                                   for _ in range(rng.randrange(12)))
                    outcomes: list[str | None] = []
                    for target in (ref, cand):
                        try:
                            target.extend(pairs)
                            outcomes.append(None)
                        except OverflowError:
                            outcomes.append("overflow")
                    assert outcomes[0] == outcomes[1], outcomes
                else:
                    assert ref.pop() == cand.pop()
                assert len(ref) == len(cand)
                assert [ref.free(i) for i in range(3)] == [cand.free(i) for i in range(3)]
            assert list(ref.drain()) == list(cand.drain())
    print("ringbuffer_candidates: self-check passed")


if __name__ == "__main__":
    _selfcheck()
