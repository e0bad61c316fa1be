"""Every bad input gives a typed GoRelayError naming the fix, and damages nothing."""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import subprocess

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


def test_store_not_in_this_release():
    with pytest.raises(UnsupportedStore, match="gorelay\\+sqlite"):
        connect("gorelay+postgresql://postgres@127.0.0.1/test")


def test_synchronous_full_is_applied(tmp_path):
    with connect(f"gorelay+sqlite:///{tmp_path / 'relay.db'}", synchronous="FULL") as conn:
        store = conn.transport.store
        assert store._conn().execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
