"""Enqueue tasks, run a real ``celery worker`` on ./relay.db, print the results.

    python examples/quickstart/run.py

The worker is a subprocess (``celery -A tasks worker``), exactly what you
would run in production; this script is the producer.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from tasks import add, send_email  # noqa: E402


def main() -> int:
    os.chdir(HERE)  # gorelay:// means ./relay.db
    # Enqueue before any worker runs: the tasks wait durably in relay.db.
    sums = [add.delay(i, i * 10) for i in range(5)]
    mail = send_email.delay("user@example.com")
    print(f"enqueued {len(sums) + 1} tasks into {os.path.join(HERE, 'relay.db')}")

    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "tasks", "worker", "--pool", "threads",
         "--concurrency", "2", "--loglevel", "warning", "--without-gossip",
         "--without-mingle"],
        cwd=HERE, start_new_session=True,
    )
    try:
        for result in sums:
            print("add ->", result.get(timeout=60))
        print("send_email ->", mail.get(timeout=60))
    finally:
        os.killpg(worker.pid, signal.SIGTERM)  # warm shutdown: leases are released
        worker.wait(timeout=30)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
