"""Leases: a killed worker's messages come back; a held message does not."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from accept_helpers import read_lines, tags, wait_for

pytestmark = pytest.mark.acceptance


def _lines(record: Path, kind: str, tag: str) -> list[list[str]]:
    return [parts for parts in (line.split() for line in read_lines(record))
            if parts[:2] == [kind, tag]]


@pytest.mark.timeout(150)
def test_sigkilled_worker_task_is_redelivered_and_completes(make_env, tmp_path: Path) -> None:
    env = make_env(visibility_timeout=1)
    record = tmp_path / "record.txt"
    first = env.worker(pool="prefork", concurrency=1, name="doomed")
    env.send("accept.slow", str(record), "victim", 3)
    behind = [f"behind-{i}" for i in range(5)]  # prefetched by the doomed worker
    env.send_many(("accept.record", (str(record), tag), {}) for tag in behind)

    wait_for(lambda: _lines(record, "start", "victim"), 60, "the slow task to start",
             lambda: env.diag(first, records=[record]))
    first.kill()  # SIGKILL the whole group: the main process and the pool child
    assert not _lines(record, "done", "victim"), env.diag(first, records=[record])

    second = env.worker(pool="prefork", concurrency=1, name="rescuer")
    wait_for(lambda: _lines(record, "done", "victim")
             and all(t in tags(record) for t in behind), 60,
             "the slow task to run again and complete, and the prefetched tasks to run",
             lambda: env.diag(second, first, records=[record]))

    starts = _lines(record, "start", "victim")
    dones = _lines(record, "done", "victim")
    assert len(starts) == 2 and starts[0][2] != starts[1][2], env.diag(
        second, first, records=[record])
    assert len(dones) == 1 and dones[0][2] == starts[1][2], env.diag(
        second, first, records=[record])
    ran_behind = [t for t in tags(record) if t.startswith("behind-")]
    assert sorted(ran_behind) == sorted(behind), (
        f"prefetched tasks lost or duplicated: {ran_behind}\n"
        + env.diag(second, first, records=[record]))
    assert env.message_count("celery") == 0, env.diag(second, first, records=[record])


@pytest.mark.timeout(120)
def test_task_longer_than_visibility_timeout_runs_once(make_env, tmp_path: Path) -> None:
    vt = 1.0
    env = make_env(visibility_timeout=vt)
    record = tmp_path / "record.txt"
    # One pool process: the long task runs while the quick one waits prefetched
    # (leased, not acked) for 4 s.  Both leases must be renewed the whole time;
    # an expired one would be reserved again by this same worker (its prefetch
    # window has room) and run a second time.
    worker = env.worker(pool="prefork", concurrency=1)
    env.send("accept.slow", str(record), "long", 4)
    env.send("accept.record", str(record), "waiting")

    wait_for(lambda: _lines(record, "done", "long") and "waiting" in tags(record), 60,
             "the long task and the one behind it", lambda: env.diag(worker, records=[record]))
    time.sleep(2 * vt)  # a redelivery would come within one visibility timeout

    lines = read_lines(record)
    assert len(_lines(record, "start", "long")) == 1, (
        f"the long task ran more than once: {lines}\n" + env.diag(worker, records=[record]))
    assert len(_lines(record, "done", "long")) == 1, env.diag(worker, records=[record])
    assert tags(record).count("waiting") == 1, env.diag(worker, records=[record])
