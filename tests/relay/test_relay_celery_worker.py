"""Relay topics under a real ``celery -A relay_app:relay worker`` process: handlers
run, retries follow the policy, and an idempotency key holds across 4 producer
processes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from accept_helpers import read_lines

pytestmark = [pytest.mark.acceptance, pytest.mark.timeout(120)]

PRODUCERS = 4
KEYS = 15

PRODUCER = """
import json, sys
import relay_app
from relay_app import Record
relay = relay_app.make_relay(sys.argv[1])
path, who = sys.argv[2], sys.argv[3]
ids = {}
for i in range(int(sys.argv[4])):
    key = f"signup:{i}"
    ids[key] = relay.enqueue("rec.write", Record(path, f"{key} from-{who}"), idempotency_key=key)
print(json.dumps(ids))
"""


def test_the_worker_runs_relay_handlers(celery_worker_env, worker_relay, tmp_path: Path) -> None:
    from relay_app import Record

    record = tmp_path / "ran.txt"
    task_id = worker_relay.enqueue("rec.write", Record(str(record), "hello"))
    assert worker_relay.celery.AsyncResult(task_id).get(timeout=30) == "hello"
    [line] = read_lines(record)
    assert line == f"hello {celery_worker_env.shared_worker.nodename}"


def test_failing_twice_then_succeeding_follows_the_policy(celery_worker_env, worker_relay,
                                                         tmp_path: Path) -> None:
    from relay_app import FLAKY_POLICY, Flaky

    record = tmp_path / "flaky.txt"
    task_id = worker_relay.enqueue("rec.flaky", Flaky(str(record), "f1", failures=2))
    assert worker_relay.celery.AsyncResult(task_id).get(timeout=30) == "ok"
    runs = [json.loads(line) for line in read_lines(record)]
    assert [(r["retries"], r["delay"]) for r in runs] == [
        (0, None), (1, FLAKY_POLICY.delay(0)), (2, FLAKY_POLICY.delay(1))]


def test_an_idempotency_key_holds_across_producer_processes(celery_worker_env, worker_relay,
                                                           tmp_path: Path) -> None:
    record = tmp_path / "signups.txt"
    env = celery_worker_env.environ()
    producers = [subprocess.Popen(
        [sys.executable, "-c", PRODUCER, celery_worker_env.url, str(record), str(n),
         str(KEYS)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for n in range(PRODUCERS)]
    results = []
    for p in producers:
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))
    # Every producer got the same task id for a key: the first one's.
    assert all(r == results[0] for r in results), results
    ids = set(results[0].values())
    assert len(ids) == KEYS
    for task_id in ids:
        worker_relay.celery.AsyncResult(task_id).get(timeout=30)
    lines = read_lines(record)
    keys = sorted(line.split()[0] for line in lines)
    assert keys == sorted(f"signup:{i}" for i in range(KEYS)), lines  # each ran once
    assert worker_relay.store.size("relay-tests") == 0  # and no duplicate waits
