"""ETA/countdown: stored invisible until due, then run exactly once."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from accept_helpers import read_lines, tags, wait_for

pytestmark = pytest.mark.acceptance


@pytest.mark.timeout(120)
def test_countdown_runs_once_and_not_early(make_env, tmp_path: Path) -> None:
    vt = 1.0
    env = make_env(visibility_timeout=vt)
    record = tmp_path / "record.txt"
    worker = env.worker(pool="threads", concurrency=2)

    published = time.time()
    env.send("accept.stamp", str(record), "later", countdown=3)
    env.send("accept.stamp", str(record), "now")  # not held up by the scheduled one

    wait_for(lambda: "now" in tags(record), 30, "the immediate task",
             lambda: env.diag(worker, records=[record]))
    wait_for(lambda: "later" in tags(record), 30, "the countdown task",
             lambda: env.diag(worker, records=[record]))
    time.sleep(2 * vt + 0.5)  # a redelivery would come within one visibility timeout

    runs = [float(line.split()[1]) for line in read_lines(record) if line.startswith("later ")]
    assert len(runs) == 1, f"ran {len(runs)} times\n" + env.diag(worker, records=[record])
    assert runs[0] >= published + 3, (
        f"ran {runs[0] - published:.3f}s after publishing, before its countdown of 3s\n"
        + env.diag(worker, records=[record]))
    assert tags(record).count("now") == 1, env.diag(worker, records=[record])
