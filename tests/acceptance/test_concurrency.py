"""Two workers and two producer processes on one SQLite file."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest
from accept_helpers import HERE, duplicates, read_lines, tags, wait_for

pytestmark = pytest.mark.acceptance

PER_PRODUCER = 1000
LOCK_MARKERS = ("database is locked", "StoreUnavailable")


@pytest.mark.timeout(240)
def test_two_workers_two_producers_no_dupes_no_losses_no_locks(make_env, tmp_path: Path) -> None:
    env = make_env(visibility_timeout=3)
    record = tmp_path / "record.txt"
    workers = [env.worker(pool="threads", concurrency=4, name=f"w{i}", ready=False)
               for i in range(2)]
    for w in workers:
        w.wait_ready()
    producers = [
        env.spawn(f"producer{i}", [sys.executable, str(HERE / "producer.py"), f"p{i}",
                                   str(PER_PRODUCER), str(record)])
        for i in range(2)
    ]
    expected = {f"p{i}-{n}" for i in range(2) for n in range(PER_PRODUCER)}

    def diagnostics() -> str:
        return env.diag(*producers, *workers, records=[record])

    wait_for(lambda: len(read_lines(record)) >= len(expected), 200,
             f"{len(expected)} executions", diagnostics)
    for p in producers:
        assert p.wait(30) == 0, diagnostics()
        assert f"sent {PER_PRODUCER}" in p.log_text(), diagnostics()

    # Warm shutdown: each worker flushes its acks and releases what it still
    # holds; afterwards nothing may be left in the queue.
    for w in workers:
        w.stop()
    ran = tags(record)
    dup = duplicates(ran)
    missing = sorted(expected - set(ran))
    assert not dup and not missing, (
        f"duplicates={dict(list(dup.items())[:20])} ({len(dup)}), "
        f"missing={missing[:20]} ({len(missing)})\n" + diagnostics())
    assert len(ran) == len(expected), diagnostics()
    assert env.message_count("celery") == 0, diagnostics()
    # An ack that never reached the store would leave its message leased; once
    # the lease expires the next consumer (any restarted worker) would get it
    # and run the task again.  Wait out the lease and look.
    time.sleep(env.visibility_timeout + 0.5)
    leftover = env.get_one("celery")
    assert leftover is None, (
        f"a message of an executed task came back after its lease expired: {leftover}\n"
        + diagnostics())

    for proc in (*workers, *producers):
        text = proc.log_text()
        for marker in LOCK_MARKERS:
            assert marker not in text, f"{marker!r} in {proc.name}'s output\n" + diagnostics()
    per_worker = {w.nodename: sum(1 for line in read_lines(record) if line.endswith(w.nodename))
                  for w in workers}
    print(f"executions per worker: {per_worker}")
