"""Shared fixtures: stores by kind, each isolated in its own file, schema or key prefix.

Server stores plug in through a module ``tests/server_<kind>.py`` that
defines ``make_store() -> Store``, ``make_url() -> str`` (a broker URL for a
fresh, isolated namespace) and ``cleanup(store_or_url)``; a kind is tested
once its store module ``gorelay_kombu/storage/<module>.py`` exists.  Those
helpers call :func:`require_server`, which skips on a laptop without the
server and fails under ``CI=true``.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import uuid
from collections.abc import Iterator

import pytest

from gorelay_kombu.storage import STORES, Store
from gorelay_kombu.storage.memory import MemoryStore
from gorelay_kombu.storage.sqlite import SQLiteStore

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

SERVER_KINDS = ("postgresql", "redis")


def _available(kind: str) -> bool:
    module = STORES[kind].partition(":")[0]
    return importlib.util.find_spec(module) is not None


#: Every store the contract and kombu-level suites run against.
STORE_KINDS = ["memory", "sqlite"] + [k for k in SERVER_KINDS if _available(k)]


def require_server(name: str, reachable: bool, detail: str = "") -> None:
    """Skip (laptop) or fail (CI) when a server the test needs is not reachable."""
    if reachable:
        return
    message = f"{name} is not reachable{': ' + detail if detail else ''}"
    if IN_CI:
        pytest.fail(f"{message} (CI=true: server tests must run, not skip)")
    pytest.skip(message)


def _server(kind: str):
    return importlib.import_module(f"tests.server_{kind}")


def store_url(kind: str, tmp_path) -> str:
    """A fresh, isolated broker URL of ``kind``."""
    if kind == "memory":
        return f"gorelay+memory://test-{uuid.uuid4().hex}"
    if kind == "sqlite":
        return f"gorelay+sqlite:///{tmp_path / 'relay.db'}"
    return _server(kind).make_url()


def make_store(kind: str, tmp_path) -> Store:
    if kind == "memory":
        return MemoryStore(f"test-{uuid.uuid4().hex}")
    if kind == "sqlite":
        return SQLiteStore(str(tmp_path / "relay.db"))
    return _server(kind).make_store()


def cleanup(kind: str, target) -> None:
    if kind in SERVER_KINDS:
        _server(kind).cleanup(target)
    elif isinstance(target, MemoryStore):
        MemoryStore.forget(target.name)


@pytest.fixture(params=STORE_KINDS)
def store_kind(request) -> str:
    return request.param


@pytest.fixture
def store(store_kind, tmp_path) -> Iterator[Store]:
    s = make_store(store_kind, tmp_path)
    yield s
    s.close()
    cleanup(store_kind, s)
