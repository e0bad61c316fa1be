"""Fixtures for the Relay tests: Relays on their own SQLite files, one shared
``celery -A relay_app:relay worker`` subprocess per xdist process."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
ACCEPTANCE = HERE.parent / "acceptance"
for folder in (HERE, ACCEPTANCE):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

from accept_helpers import Env, Worker  # noqa: E402

from gorelay_kombu import Relay  # noqa: E402


def sqlite_url(path: Path) -> str:
    return f"gorelay+sqlite:///{path}"  # an absolute path: four slashes


@pytest.fixture
def make_relay(tmp_path: Path) -> Iterator[Callable[..., Relay]]:
    """Relays on this test's SQLite file (or a given URL); shut down afterwards."""
    relays: list[Relay] = []

    def factory(url: str | None = None, **kwargs: Any) -> Relay:
        relay = Relay(url or sqlite_url(tmp_path / "relay.db"), **kwargs)
        relays.append(relay)
        return relay

    yield factory
    for relay in relays:
        relay.shutdown(timeout=10)


class RelayEnv(Env):
    """An acceptance Env whose processes see ``RELAY_TEST_URL`` and ``tests/relay``."""

    def environ(self) -> dict[str, str]:
        env = super().environ()
        env["RELAY_TEST_URL"] = self.url
        env["PYTHONPATH"] = str(HERE) + ":" + env["PYTHONPATH"]
        return env

    def celery_argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "celery", "-A", "relay_app:relay", *args]


@pytest.fixture(scope="module")
def celery_worker_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RelayEnv]:
    """A real ``celery -A relay_app:relay worker`` (threads, 2) on its own store."""
    env = RelayEnv(tmp_path_factory.mktemp("relay-worker"), default_queue="relay-tests")
    try:
        env.shared_worker = env.worker("-Q", "relay-tests", pool="threads", concurrency=2,
                                       name="relay")
        yield env
    finally:
        env.close()


@pytest.fixture(scope="module")
def worker_relay(celery_worker_env: RelayEnv) -> Iterator[Relay]:
    """The producer side of :func:`celery_worker_env`: relay_app's topics on its store."""
    import relay_app

    relay = relay_app.make_relay(celery_worker_env.url)
    yield relay
    relay.shutdown()


__all__ = ["RelayEnv", "Worker", "sqlite_url"]
