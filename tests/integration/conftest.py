from __future__ import annotations

import pytest
from kombu import Connection

from tests.conftest import STORE_KINDS, cleanup, store_url


@pytest.fixture(params=STORE_KINDS)
def url(request, tmp_path):
    value = store_url(request.param, tmp_path)
    yield value
    cleanup(request.param, value)


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return store_url("sqlite", tmp_path)


@pytest.fixture
def connect(url):
    """Open kombu connections on the test's store; all closed at teardown."""
    opened: list[Connection] = []

    def _connect(**transport_options) -> Connection:
        conn = Connection(url, transport_options=transport_options)
        conn.connect()
        opened.append(conn)
        return conn

    yield _connect
    for conn in opened:
        conn.release()
