"""Starting the dashboard: ``gorelay dashboard URL`` and ``celery -A app gorelay dashboard``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from importlib.metadata import entry_points

import pytest
from celery import Celery
from click.testing import CliRunner

from gorelay_kombu.cli import main
from gorelay_kombu.compat.celery_cli import app_stores, gorelay
from tests.conftest import IN_CI

from .conftest import TOKEN

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "GORELAY_DASHBOARD_TOKEN"}
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


def test_gorelay_dashboard_refuses_a_public_bind_without_token(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("GORELAY_DASHBOARD_TOKEN", raising=False)
    url = f"gorelay+sqlite:///{tmp_path / 'relay.db'}"
    assert main(["dashboard", url, "--bind", "0.0.0.0:0"]) == 2
    err = capsys.readouterr().err
    assert "--token" in err and "GORELAY_DASHBOARD_TOKEN" in err
    assert main(["dashboard", url, "--bind", "0.0.0.0:0", "--token", "short"]) == 2
    assert "at least 16" in capsys.readouterr().err


def test_gorelay_dashboard_serves_until_interrupted(tmp_path):
    url = f"gorelay+sqlite:///{tmp_path / 'relay.db'}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "gorelay_kombu.cli", "dashboard", url, "--bind", "127.0.0.1:0",
         "--read-only", "--quiet"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
    try:
        line = proc.stdout.readline()
        assert "gorelay dashboard on http://127.0.0.1:" in line, proc.stderr.read()
        assert "read-only" in line
        base = line.split(" on ")[1].split(" ")[0]
        with urllib.request.urlopen(base + "api/overview", timeout=10) as response:
            assert json.load(response)["total"] == 0
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 0


def _cli_context(app: Celery):
    from celery.bin.base import CLIContext

    return CLIContext(app=app, no_color=True, workdir=None, quiet=True)


def test_celery_subcommand_reads_the_apps_stores(tmp_path):
    broker = f"gorelay+sqlite:///{tmp_path / 'broker.db'}"
    app = Celery("t", broker=broker, set_as_current=False)
    app.conf.broker_transport_options = {"visibility_timeout": 10, "busy_timeout": 5}
    assert app_stores(app) == (broker, {"busy_timeout": 5}, None, {})
    app.conf.result_backend = f"gorelay+sqlite:///{tmp_path / 'results.db'}"
    assert app_stores(app)[2] == app.conf.result_backend
    app.conf.result_backend = broker
    assert app_stores(app)[2] is None  # same store: opened once


def test_celery_subcommand_refuses_a_non_gorelay_broker_and_a_public_bind(tmp_path):
    runner = CliRunner()
    other = Celery("t", broker="redis://localhost:6379/0", set_as_current=False)
    result = runner.invoke(gorelay, ["dashboard"], obj=_cli_context(other))
    assert result.exit_code != 0 and "not a gorelay URL" in result.output
    app = Celery("t", broker=f"gorelay+sqlite:///{tmp_path / 'b.db'}", set_as_current=False)
    result = runner.invoke(gorelay, ["dashboard", "--bind", "0.0.0.0:0"], obj=_cli_context(app),
                           env={"GORELAY_DASHBOARD_TOKEN": ""})
    assert result.exit_code != 0 and "--token" in result.output


def _celery_command_registered() -> bool:
    return any(ep.name == "gorelay" for ep in entry_points(group="celery.commands"))


def test_celery_command_is_registered_and_serves(tmp_path):
    if not _celery_command_registered():
        message = ("the celery.commands entry point 'gorelay' is not installed "
                   "(pyproject.toml, then pip install -e .)")
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    url = f"gorelay+sqlite:///{tmp_path / 'relay.db'}"
    env = _env(GORELAY_TEST_DASHBOARD_URL=url, GORELAY_DASHBOARD_TOKEN=TOKEN)
    proc = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "tests.dashboard.celery_app", "gorelay",
         "dashboard", "--bind", "127.0.0.1:0", "--quiet"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    try:
        line = proc.stdout.readline()
        assert "gorelay dashboard on http://127.0.0.1:" in line, proc.stderr.read()
        base = line.split(" on ")[1].split(" ")[0]
        request = urllib.request.Request(base + "api/workers",
                                         headers={"Authorization": f"Bearer {TOKEN}"})
        with urllib.request.urlopen(request, timeout=10) as response:
            assert json.load(response) == []
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=20)
