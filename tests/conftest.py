"""Shared fixtures: stores by name, each isolated in its own file or namespace."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from gorelay_kombu.storage import Store
from gorelay_kombu.storage.memory import MemoryStore
from gorelay_kombu.storage.sqlite import SQLiteStore

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

#: Every store the contract suite runs against; later stores add a name here.
STORE_KINDS = ["memory", "sqlite"]


def store_url(kind: str, tmp_path) -> str:
    """A fresh, isolated store URL of ``kind``."""
    if kind == "memory":
        return f"gorelay+memory://test-{uuid.uuid4().hex}"
    if kind == "sqlite":
        return f"gorelay+sqlite:///{tmp_path / 'relay.db'}"
    raise ValueError(kind)


def make_store(kind: str, tmp_path) -> Store:
    if kind == "memory":
        return MemoryStore(f"test-{uuid.uuid4().hex}")
    return SQLiteStore(str(tmp_path / "relay.db"))


@pytest.fixture(params=STORE_KINDS)
def store_kind(request) -> str:
    return request.param


@pytest.fixture
def store(store_kind, tmp_path) -> Iterator[Store]:
    s = make_store(store_kind, tmp_path)
    yield s
    s.close()
    if isinstance(s, MemoryStore):
        MemoryStore.forget(s.name)
