"""Scenarios that only need a running worker: they share one per xdist process.

The shared worker (see ``conftest.shared``): ``-P threads -c 4 -E -Q a,b``,
``visibility_timeout=2``.  Each test records into its own file.
"""

from __future__ import annotations

import json
import sys
import time
import uuid
from pathlib import Path

import pytest
from accept_helpers import HERE, duplicates, read_lines, tags, wait_for

pytestmark = pytest.mark.acceptance


@pytest.mark.timeout(180)
def test_thousand_tasks_each_run_exactly_once(shared, tmp_path: Path) -> None:
    record = tmp_path / "record.txt"
    expected = [f"t{i}" for i in range(1000)]
    shared.send_many(("accept.record", (str(record), tag), {}) for tag in expected)

    wait_for(lambda: len(read_lines(record)) >= len(expected), 150,
             "1000 executions", lambda: shared.diag(records=[record]))
    # A message whose lease were lost or double-reserved would run again within
    # the visibility timeout (2 s): watch a little longer than that.
    time.sleep(shared.visibility_timeout + 1)

    ran = tags(record)
    dup = duplicates(ran)
    missing = sorted(set(expected) - set(ran))
    assert not dup and not missing and len(ran) == len(expected), (
        f"duplicates={dict(list(dup.items())[:20])} ({len(dup)} tags), "
        f"missing={missing[:20]} ({len(missing)}), executions={len(ran)}\n"
        + shared.diag(records=[record]))
    assert shared.message_count("a") == 0, shared.diag(records=[record])


def test_inspect_ping_answers_with_worker_name(shared) -> None:
    worker = shared.shared_worker
    result = shared.run("inspect", "ping", "-d", worker.nodename, "--timeout", "10")
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"rc={result.returncode}\n{output}\n{shared.diag()}"
    assert worker.nodename in output and "pong" in output, f"{output}\n{shared.diag()}"


@pytest.mark.timeout(120)
def test_event_consumer_sees_task_events(shared, tmp_path: Path) -> None:
    worker = shared.shared_worker
    events_file = tmp_path / "events.jsonl"
    record = tmp_path / "record.txt"
    consumer = shared.spawn(
        "event-consumer", [sys.executable, str(HERE / "event_consumer.py"), str(events_file)])

    def events() -> list[dict]:
        return [json.loads(line) for line in read_lines(events_file) if line.strip()]

    def diagnostics() -> str:
        return shared.diag(consumer, worker, records=[events_file, record])

    try:
        wait_for(lambda: any(e["type"] == "consumer-ready" for e in events()), 60,
                 "the event consumer to bind its queue", diagnostics)
        task_id = str(uuid.uuid4())
        shared.send("accept.record", str(record), "evented", task_id=task_id)

        def seen(kind: str) -> bool:
            return any(e["type"] == kind and e.get("uuid") == task_id for e in events())

        wait_for(lambda: seen("task-succeeded"), 60,
                 f"a task-succeeded event for {task_id}", diagnostics)
        assert seen("task-received"), diagnostics()
        succeeded = [e for e in events()
                     if e["type"] == "task-succeeded" and e.get("uuid") == task_id]
        assert succeeded[0]["hostname"] == worker.nodename, diagnostics()
        assert tags(record) == ["evented"], diagnostics()
    finally:
        consumer.stop(timeout=5)


@pytest.mark.timeout(120)
def test_worker_consumes_every_queue_it_is_given(shared, tmp_path: Path) -> None:
    record = tmp_path / "record.txt"
    # Published first, to a queue the worker was not given: must stay there.
    shared.send("accept.record", str(record), "c-0", queue="c")
    expected = []
    calls = []
    for i in range(10):
        for queue in ("a", "b"):
            tag = f"{queue}-{i}"
            expected.append(tag)
            calls.append(("accept.record", (str(record), tag), {"queue": queue}))
    shared.send_many(calls)

    wait_for(lambda: len(read_lines(record)) >= len(expected), 60,
             "tasks of queues a and b", lambda: shared.diag(records=[record]))
    ran = tags(record)
    assert sorted(ran) == sorted(expected), shared.diag(records=[record])
    assert shared.message_count("c") == 1, shared.diag(records=[record])
    assert shared.message_count("a") == 0 and shared.message_count("b") == 0, shared.diag(
        records=[record])
