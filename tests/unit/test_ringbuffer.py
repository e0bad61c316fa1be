from __future__ import annotations

import pytest

from gorelay_kombu.priority import HIGH, LOW, NORMAL
from gorelay_kombu.ringbuffer import LaneRing


def test_serves_high_then_normal_then_low_fifo_inside_a_lane():
    ring: LaneRing[str] = LaneRing(4)
    ring.extend([(LOW, "l1"), (NORMAL, "n1"), (HIGH, "h1"), (LOW, "l2"), (HIGH, "h2")])
    assert len(ring) == 5
    assert [ring.pop() for _ in range(6)] == ["h1", "h2", "n1", "l1", "l2", None]
    assert len(ring) == 0


def test_bounded_per_lane_and_wraps_around():
    ring: LaneRing[int] = LaneRing(3)  # rounded up to 4
    assert ring.capacity == 4
    for round_ in range(5):  # wrap the head around several times
        for i in range(4):
            ring.push(NORMAL, round_ * 10 + i)
        assert ring.free(NORMAL) == 0 and ring.free(HIGH) == 4
        with pytest.raises(OverflowError):
            ring.push(NORMAL, -1)
        assert list(ring.drain()) == [round_ * 10 + i for i in range(4)]


def test_a_late_high_item_overtakes_buffered_low_items():
    ring: LaneRing[str] = LaneRing(8)
    ring.extend([(LOW, "l1"), (LOW, "l2")])
    assert ring.pop() == "l1"
    ring.push(HIGH, "h")
    assert [ring.pop(), ring.pop()] == ["h", "l2"]
