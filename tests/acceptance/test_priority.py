"""Priority lanes, end to end: a backlog drains high, then normal, then low."""

from __future__ import annotations

from pathlib import Path

import pytest
from accept_helpers import read_lines, tags, wait_for

pytestmark = pytest.mark.acceptance

PER_LANE = 30


@pytest.mark.timeout(120)
def test_backlog_drains_lane_by_lane(make_env, tmp_path: Path) -> None:
    env = make_env()
    record = tmp_path / "order.txt"
    # Published low first, so FIFO alone would give the reverse order.
    lanes = [("low", 9), ("normal", 5), ("high", 0)]
    calls = []
    for lane, priority in lanes:
        for i in range(PER_LANE):
            calls.append(("accept.record", (str(record), f"{lane}-{i:02d}"),
                          {"priority": priority}))
    env.send_many(calls)
    assert env.message_count("celery") == 3 * PER_LANE

    # Default (prefork) pool, one process, one message prefetched at a time.
    worker = env.worker("--prefetch-multiplier", "1", pool="prefork", concurrency=1)
    wait_for(lambda: len(read_lines(record)) >= 3 * PER_LANE, 90, "the whole backlog",
             lambda: env.diag(worker, records=[record]))

    order = tags(record)
    expected = [f"{lane}-{i:02d}" for lane in ("high", "normal", "low") for i in range(PER_LANE)]
    assert order == expected, (
        "execution order is not high lane, then normal, then low (FIFO in each):\n"
        f"got {order}\n" + env.diag(worker, records=[record]))
