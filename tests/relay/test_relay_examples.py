"""The Relay examples run: the quickstart in-process and under ``celery -A app:relay
worker``, and the Flask app's signup with its transactional enqueue."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from accept_helpers import Worker, wait_for

pytestmark = [pytest.mark.acceptance, pytest.mark.timeout(120)]

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def copy_example(name: str, tmp_path: Path) -> Path:
    folder = tmp_path / name
    shutil.copytree(EXAMPLES / name, folder)
    return folder


def environ() -> dict[str, str]:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.pop("RELAY_URL", None)
    return env


def run(folder: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=folder, env=environ(),
                          capture_output=True, text=True, timeout=90)


def test_quickstart_runs_in_process(tmp_path: Path) -> None:
    folder = copy_example("relay_quickstart", tmp_path)
    proc = run(folder, "app.py")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert "Sending to: user@example.com" in lines
    assert "result: sent 8 characters to user@example.com" in lines
    assert (folder / "relay.db").exists()  # Relay() means ./relay.db


def test_quickstart_handlers_run_under_celery_worker(tmp_path: Path) -> None:
    folder = copy_example("relay_quickstart", tmp_path)
    nodename = f"qs-{uuid.uuid4().hex[:8]}@example"
    worker = Worker(nodename, "worker", [
        sys.executable, "-m", "celery", "-A", "app:relay", "worker", "-n", nodename,
        "-P", "threads", "-c", "1", "-l", "INFO", "--without-gossip", "--without-mingle",
        "--without-heartbeat"], environ(), folder, folder / "worker.log")
    try:
        worker.wait_ready()
        proc = run(folder, "app.py", "--enqueue-only")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        task_id = proc.stdout.split()[-1]
        check = run(folder, "-c", "import sys; from app import relay; "
                    "print(relay.celery.AsyncResult(sys.argv[1]).get(timeout=60))", task_id)
        assert check.stdout.strip() == "sent 8 characters to user@example.com", \
            check.stderr + worker.describe()
        wait_for(lambda: "Sending to: user@example.com" in worker.log_text(), 10,
                 "the handler's output in the worker log", worker.describe)
    finally:
        worker.stop()


FLASK_CLIENT = """
from app import app, relay
relay.start(concurrency=1)
client = app.test_client()
created = client.post("/signup", json={"email": "ada@example.com"})
print("created", created.status_code)
task_id = created.get_json()["task_id"]
relay.celery.AsyncResult(task_id).get(timeout=60)
print("task", client.get(f"/tasks/{task_id}").get_json())
print("again", client.post("/signup", json={"email": "ada@example.com"}).status_code)
print("invalid", client.post("/signup", json={}).status_code)
relay.shutdown()
"""


def test_flask_app_enqueues_in_its_request_handler(tmp_path: Path) -> None:
    pytest.importorskip("flask")
    folder = copy_example("flask_app", tmp_path)
    proc = run(folder, "-c", FLASK_CLIENT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert "created 201" in lines
    assert "welcome mail to ada@example.com (user 1)" in lines
    assert ("task {'result': 'welcomed ada@example.com', 'state': 'SUCCESS', 'task_id': "
            in proc.stdout)
    assert "again 409" in lines  # the rolled-back second signup sent nothing
    assert "invalid 400" in lines
    assert lines.count("welcome mail to ada@example.com (user 1)") == 1
