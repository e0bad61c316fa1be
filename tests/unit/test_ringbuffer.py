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


def test_extend_stops_at_capacity_and_keeps_what_fitted():
    ring: LaneRing[int] = LaneRing(2)
    with pytest.raises(OverflowError):
        ring.extend([(HIGH, 1), (HIGH, 2), (HIGH, 3)])
    assert ring.free(HIGH) == 0
    ring.extend([(LOW, 9)])
    assert list(ring.drain()) == [1, 2, 9]


def test_matches_a_reference_model_on_random_operations():
    import random

    rng = random.Random(7)
    ring: LaneRing[int] = LaneRing(16)
    model: list[list[int]] = [[], [], []]
    for step in range(3000):
        if rng.random() < 0.5:
            batch = sorted((rng.randrange(3), step * 100 + i) for i in range(rng.randrange(5)))
            batch = [(lane, item) for lane, item in batch if len(model[lane]) < 16]
            room = {lane: 16 - len(model[lane]) for lane in range(3)}
            fitting = []
            for lane, item in batch:
                if room[lane] > 0:
                    room[lane] -= 1
                    fitting.append((lane, item))
            ring.extend(fitting)
            for lane, item in fitting:
                model[lane].append(item)
        else:
            expected = next((lane.pop(0) for lane in model if lane), None)
            assert ring.pop() == expected
        assert len(ring) == sum(map(len, model))
