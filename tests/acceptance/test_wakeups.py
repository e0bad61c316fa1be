"""Wake-ups: work is delivered on commit, not on the fallback polling timer.

``polling_interval`` is documented as "only the fallback": consumers are woken
right after a commit, and a channel whose prefetch window was full is woken
when an ack frees a slot.  With one message in flight at a time, a worker that
waited for the fallback timer between tasks would need about
``polling_interval`` per task; a woken one needs milliseconds.  The bound below
(``WITHIN``) is far from both: 20 tasks would need ~40 s on the timer, a
healthy worker needs well under 1 s.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from accept_helpers import read_lines, tags, wait_for

pytestmark = pytest.mark.acceptance

POLLING_INTERVAL = 2.0
BACKLOG = 20
WITHIN = 10.0


@pytest.mark.timeout(150)
@pytest.mark.parametrize("pool", ["solo", "prefork", "threads"])
def test_worker_is_not_paced_by_polling_interval(make_env, tmp_path: Path, pool: str) -> None:
    env = make_env(transport_options={"polling_interval": POLLING_INTERVAL})
    record = tmp_path / "record.txt"
    backlog = [f"backlog-{i}" for i in range(BACKLOG)]
    env.send_many(("accept.record", (str(record), tag), {}) for tag in backlog)
    # One message in flight at a time: every next one waits for the previous ack.
    worker = env.worker("--prefetch-multiplier", "1", pool=pool, concurrency=1)

    wait_for(lambda: len(read_lines(record)) >= len(backlog), WITHIN,
             f"a backlog of {len(backlog)} tasks, each freeing the only prefetch slot "
             f"(polling_interval={POLLING_INTERVAL}s)",
             lambda: env.diag(worker, records=[record]))

    fresh = [f"fresh-{i}" for i in range(5)]  # published while the worker is idle
    for tag in fresh:
        env.send("accept.record", str(record), tag)
    wait_for(lambda: len(read_lines(record)) >= len(backlog) + len(fresh), WITHIN,
             "tasks published to an idle worker", lambda: env.diag(worker, records=[record]))
    assert sorted(tags(record)) == sorted(backlog + fresh), env.diag(worker, records=[record])
