"""The README's first command runs the quickstart example end to end."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.acceptance

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.mark.timeout(180)
def test_quickstart_enqueues_runs_a_worker_and_prints_results(tmp_path):
    app_dir = tmp_path / "quickstart"
    shutil.copytree(EXAMPLES / "quickstart", app_dir)
    proc = subprocess.run([sys.executable, "run.py"], cwd=app_dir, capture_output=True,
                          text=True, timeout=150)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert [line for line in lines if line.startswith("add ->")] == [
        f"add -> {i + i * 10}" for i in range(5)
    ], proc.stdout + proc.stderr
    assert "send_email -> sent welcome email to user@example.com" in lines
    assert (app_dir / "relay.db").exists()  # gorelay:// means ./relay.db
