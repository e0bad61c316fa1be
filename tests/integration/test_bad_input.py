"""Every bad input gives a typed GoRelayError naming the fix, and damages nothing."""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import subprocess
import sys

import pytest
from kombu import Connection, Exchange, Producer, Queue

import gorelay_kombu  # noqa: F401
from gorelay_kombu import (
    GoRelayError,
    InvalidOption,
    InvalidURL,
    MessageTooLarge,
    NotAStoreError,
    SchemaVersionError,
    StoreLocationError,
    UnsupportedStore,
)


def connect(url: str, **options) -> Connection:
    conn = Connection(url, transport_options=options)
    conn.connect()
    return conn


@contextlib.contextmanager
def unwritable(path):
    """Make ``path`` unwritable even for root (chattr +i), else chmod."""
    if os.geteuid() == 0 and shutil.which("chattr"):
        subprocess.run(["chattr", "+i", str(path)], check=True)
        try:
            yield
        finally:
            subprocess.run(["chattr", "-i", str(path)], check=True)
    else:
        os.chmod(path, 0o444)
        try:
            yield
        finally:
            os.chmod(path, 0o644)


def test_all_errors_share_one_root():
    for cls in (InvalidOption, InvalidURL, MessageTooLarge, NotAStoreError, SchemaVersionError,
                StoreLocationError, UnsupportedStore):
        assert issubclass(cls, GoRelayError)


def test_malformed_url():
    with pytest.raises(InvalidURL, match="three slashes"):
        connect("gorelay+sqlite://localhost/relay.db")


def test_missing_directory(tmp_path):
    missing = tmp_path / "nope" / "deeper"
    with pytest.raises(StoreLocationError, match="mkdir -p"):
        connect(f"gorelay+sqlite:///{missing}/relay.db")
    assert not missing.exists()


def test_unwritable_file_is_refused_and_left_intact(tmp_path):
    path = tmp_path / "relay.db"
    with connect(f"gorelay+sqlite:///{path}") as conn:
        conn.SimpleQueue("q").put("kept")
    before = path.read_bytes()
    with unwritable(path), pytest.raises(StoreLocationError, match="permissions"):
        connect(f"gorelay+sqlite:///{path}")
    assert path.read_bytes() == before
    with connect(f"gorelay+sqlite:///{path}") as conn:
        assert conn.SimpleQueue("q").get(timeout=2).payload == "kept"


def test_file_that_is_not_a_database_is_left_alone(tmp_path):
    path = tmp_path / "notes.txt"
    text = b"my precious notes\n" * 100
    path.write_bytes(text)
    with pytest.raises(NotAStoreError, match="not a SQLite database"):
        connect(f"gorelay+sqlite:///{path}")
    assert path.read_bytes() == text


def test_schema_from_a_newer_release(tmp_path):
    path = tmp_path / "relay.db"
    with connect(f"gorelay+sqlite:///{path}") as conn:
        conn.SimpleQueue("q").put("kept")
    db = sqlite3.connect(path)
    db.execute("UPDATE gorelay_meta SET value = '99' WHERE key = 'schema_version'")
    db.commit()
    db.close()
    with pytest.raises(SchemaVersionError, match="pip install -U gorelay-kombu"):
        connect(f"gorelay+sqlite:///{path}")
    db = sqlite3.connect(path)
    assert db.execute("SELECT count(*) FROM gorelay_messages").fetchone()[0] == 1
    db.close()


def test_too_large_message_is_refused_before_storing(tmp_path):
    url = f"gorelay+sqlite:///{tmp_path / 'relay.db'}"
    queue = Queue("q", Exchange("q"), routing_key="q")
    with connect(url, max_message_bytes=10_000) as conn:
        producer = Producer(conn)
        producer.publish("small", routing_key="q", exchange=queue.exchange, declare=[queue])
        with pytest.raises(MessageTooLarge, match="max_message_bytes"):
            producer.publish("x" * 20_000, routing_key="q", exchange=queue.exchange)
        assert conn.default_channel.queue_declare("q", passive=True).message_count == 1


def test_default_limit_is_16_mib(tmp_path):
    url = f"gorelay+sqlite:///{tmp_path / 'relay.db'}"
    with connect(url) as conn:
        with pytest.raises(MessageTooLarge):
            conn.SimpleQueue("q").put("x" * (16 * 1024 * 1024 + 1))
        assert conn.default_channel.queue_declare("q", passive=True).message_count == 0


@pytest.mark.parametrize(
    ("options", "hint"),
    [
        ({"visiblity_timeout": 5}, "Unknown transport option"),
        ({"visibility_timeout": "soon"}, "visibility_timeout='soon' must be a number"),
        ({"visibility_timeout": 0}, "must be a number >= 0.1"),
        ({"synchronous": "SOMETIMES"}, "NORMAL survives a process crash"),
        ({"busy_timeout": -1}, "busy_timeout"),
    ],
)
def test_bad_transport_options(tmp_path, options, hint):
    with pytest.raises(InvalidOption, match=hint):
        connect(f"gorelay+sqlite:///{tmp_path / 'relay.db'}", **options)


def test_contradictory_options(tmp_path):
    with pytest.raises(InvalidOption, match="set twice"):
        connect(f"gorelay+sqlite:///{tmp_path / 'relay.db'}?synchronous=FULL",
                synchronous="NORMAL")


def test_store_not_in_this_release(monkeypatch):
    # A registered kind whose store module is not shipped (as postgresql was
    # before it existed): the error names the SQLite default.
    from gorelay_kombu import storage

    monkeypatch.setitem(storage.STORES, "postgresql",
                        "gorelay_kombu.storage.not_shipped_yet:NotShippedStore")
    with pytest.raises(UnsupportedStore, match="gorelay\\+sqlite"):
        connect("gorelay+postgresql://postgres@127.0.0.1/test")


def test_synchronous_full_is_applied(tmp_path):
    with connect(f"gorelay+sqlite:///{tmp_path / 'relay.db'}", synchronous="FULL") as conn:
        store = conn.transport.store
        assert store._conn().execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


CLI_APP = """
import os
from celery import Celery
app = Celery("badapp", broker=os.environ["BROKER"])
app.conf.broker_transport_options = eval(os.environ.get("OPTIONS", "{}"))
@app.task
def echo(x):
    return x
"""


@pytest.mark.parametrize(
    ("broker", "options", "make", "expected"),
    [
        ("gorelay+sqlite:///{tmp}/missing/relay.db", "{}", None, "StoreLocationError"),
        ("gorelay+sqlite:///{tmp}/notes.txt", "{}", "notes", "NotAStoreError"),
        ("gorelay+sqlite:///{tmp}/relay.db", "{'visiblity_timeout': 5}", None, "InvalidOption"),
        ("gorelay+sqlite://host/relay.db", "{}", None, "InvalidURL"),
    ],
)
def test_celery_worker_fails_fast_with_the_reason(tmp_path, broker, options, make, expected):
    """A worker given bad input exits at once with the typed error; it does not retry forever."""
    (tmp_path / "badapp.py").write_text(CLI_APP)
    if make == "notes":
        (tmp_path / "notes.txt").write_text("not a database\n" * 50)
    env = dict(os.environ, BROKER=broker.format(tmp=tmp_path), OPTIONS=options)
    proc = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "badapp", "worker", "-P", "solo",
         "--without-mingle", "--without-gossip"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode != 0
    assert expected in proc.stderr, proc.stderr[-2000:]
    if make == "notes":
        assert (tmp_path / "notes.txt").read_text() == "not a database\n" * 50


def test_celery_producer_gets_message_too_large(tmp_path):
    (tmp_path / "badapp.py").write_text(CLI_APP)
    code = (
        "from badapp import echo\n"
        "from gorelay_kombu import MessageTooLarge\n"
        "echo.delay('small')\n"
        "try:\n"
        "    echo.delay('x' * 20000)\n"
        "except MessageTooLarge as exc:\n"
        "    print('refused:', exc)\n"
        "with echo.app.connection_for_write() as conn:\n"
        "    print(conn.default_channel.queue_declare('celery', passive=True).message_count)\n"
    )
    env = dict(os.environ, BROKER=f"gorelay+sqlite:///{tmp_path}/relay.db",
               OPTIONS="{'max_message_bytes': 10000}")
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    refused, count = proc.stdout.strip().splitlines()
    assert refused.startswith("refused:") and "max_message_bytes" in refused
    assert count == "1"
