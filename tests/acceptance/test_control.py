"""The ``celery`` command line against the store: control shutdown and purge."""

from __future__ import annotations

import pytest
from accept_helpers import wait_for

pytestmark = pytest.mark.acceptance


@pytest.mark.timeout(120)
def test_control_shutdown_stops_the_worker(make_env) -> None:
    env = make_env()
    worker = env.worker(pool="solo", concurrency=1)
    result = env.run("control", "shutdown", "-d", worker.nodename, "--timeout", "3")

    wait_for(lambda: not worker.running(), 30, "the worker to exit after control shutdown",
             lambda: f"celery control: rc={result.returncode}\n{result.stdout}{result.stderr}\n"
             + env.diag(worker))
    assert worker.popen.returncode == 0, (
        f"celery control: {result.stdout}{result.stderr}\n" + env.diag(worker))


@pytest.mark.timeout(120)
def test_purge_empties_a_queue(make_env) -> None:
    env = make_env()
    env.send_many(("accept.record", ("/dev/null", f"p{i}"), {"queue": "purged"})
                  for i in range(25))
    env.send_many(("accept.record", ("/dev/null", f"k{i}"), {"queue": "kept"})
                  for i in range(3))
    assert env.message_count("purged") == 25
    assert env.message_count("kept") == 3

    result = env.run("purge", "-f", "-Q", "purged")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert env.message_count("purged") == 0, output
    assert env.message_count("kept") == 3, output
    assert "Purged 25 messages" in output, output
