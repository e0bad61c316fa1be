"""Fixtures for the acceptance tests (helpers live in :mod:`accept_helpers`)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from accept_helpers import Env  # noqa: E402


@pytest.fixture
def make_env(tmp_path: Path):
    """Factory of :class:`Env` on this test's own SQLite file; cleans up."""
    envs: list[Env] = []

    def factory(visibility_timeout: float | None = None, default_queue: str = "celery",
                transport_options: dict | None = None) -> Env:
        directory = tmp_path / f"env{len(envs)}"
        directory.mkdir()
        env = Env(directory, visibility_timeout, default_queue, transport_options)
        envs.append(env)
        return env

    yield factory
    for env in envs:
        env.close()


SHARED_QUEUES = ("a", "b")


@pytest.fixture(scope="session")
def shared(tmp_path_factory: pytest.TempPathFactory):
    """One worker shared by the scenarios that need only a running worker.

    Threads pool, ``-E``, consuming queues ``a`` and ``b``; ``a`` is the
    default queue.  Per xdist process: tmp_path_factory is per process, so
    every xdist process has its own store file and worker.
    """
    env = Env(tmp_path_factory.mktemp("shared"), visibility_timeout=2,
              default_queue=SHARED_QUEUES[0])
    try:
        env.shared_worker = env.worker(
            "-Q", ",".join(SHARED_QUEUES), pool="threads", concurrency=4, events=True,
            name="shared")
        yield env
    finally:
        env.close()
