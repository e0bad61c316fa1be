"""``gorelay://`` works in a fresh process that imports only Celery (or kombu + gorelay_kombu)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap


def run(code: str, cwd) -> str:
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], cwd=cwd, capture_output=True,
        text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_celery_producer_needs_no_import(tmp_path):
    out = run(
        """
        import sys
        from celery import Celery
        app = Celery("shop", broker="gorelay://")      # ./relay.db
        @app.task
        def send_email(to):
            pass
        send_email.delay("user@example.com")
        with app.connection_for_write() as conn:
            count = conn.default_channel.queue_declare("celery", passive=True).message_count
        print(count, conn.transport.driver_type, "gorelay_kombu" in sys.modules)
        """,
        tmp_path,
    )
    assert out.split() == ["1", "gorelay", "True"]
    assert (tmp_path / "relay.db").exists()


def test_celery_unset_priority_is_the_normal_lane(tmp_path):
    out = run(
        """
        import json, sqlite3
        from celery import Celery
        app = Celery("shop", broker="gorelay+sqlite:///jobs.db")
        @app.task
        def t():
            pass
        t.delay()
        t.apply_async(priority=0)
        t.apply_async(priority=5)
        t.apply_async(priority=9)
        db = sqlite3.connect("jobs.db")
        lanes = db.execute("SELECT lane FROM gorelay_messages ORDER BY id")
        print(json.dumps([r[0] for r in lanes]))
        """,
        tmp_path,
    )
    assert json.loads(out) == [1, 0, 1, 2]  # normal, high, normal, low


def test_bare_kombu_connection_after_import(tmp_path):
    out = run(
        f"""
        import gorelay_kombu
        from kombu import Connection
        with Connection("gorelay+sqlite:///{tmp_path}/abs.db") as conn:
            q = conn.SimpleQueue("q")
            q.put("hi")
            print(q.get(timeout=2).payload)
        """,
        tmp_path,
    )
    assert out.strip() == "hi"
    assert (tmp_path / "abs.db").exists()


def test_celery_cli_resolves_the_transport(tmp_path):
    (tmp_path / "cliapp.py").write_text(
        "from celery import Celery\napp = Celery('cliapp', broker='gorelay+sqlite:///cli.db')\n"
    )
    proc = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "cliapp", "purge", "-f"], cwd=tmp_path,
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "No messages purged" in proc.stdout or "Purged" in proc.stdout
