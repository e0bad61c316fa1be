"""Transactional enqueue: the task exists if and only if the caller's transaction commits,
on SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from gorelay_kombu import Relay
from gorelay_kombu.compat.recorder import flush_all
from gorelay_kombu.compat.relay_errors import NotSameDatabase, OutboxError

pytestmark = pytest.mark.timeout(60)

QUEUE = "celery"


class Case:
    """A Relay and a SQLAlchemy engine on the same database."""

    def __init__(self, relay: Relay, engine: sa.Engine, users: str) -> None:
        self.relay, self.engine, self.users = relay, engine, users

    def waiting(self) -> int:
        return self.relay.store.size(QUEUE)

    def user_count(self) -> int:
        with self.engine.connect() as conn:
            return conn.exec_driver_sql(f"SELECT count(*) FROM {self.users}").scalar_one()


def _welcome(p: dict) -> str:
    return f"welcome {p['user']}"


@pytest.fixture(params=["sqlite", "postgresql"])
def case(request, tmp_path: Path, make_relay) -> Iterator[Case]:
    if request.param == "sqlite":
        db = tmp_path / "app.db"
        relay = make_relay(f"gorelay+sqlite:///{db}")
        engine = sa.create_engine(f"sqlite:///{db}")
        users = "users"
        cleanup = None
    else:
        from tests import server_postgresql as pg

        url = pg.make_url()
        schema = url.rsplit("schema=", 1)[1]
        relay = make_relay(url)
        engine = sa.create_engine(pg.URL.replace("postgresql://", "postgresql+psycopg://", 1))
        users = f"{schema}.users"
        relay.store  # noqa: B018 - creates the schema the users table goes into
        cleanup = lambda: pg.drop_schema(schema)  # noqa: E731
    relay.register("user.welcome", _welcome)
    with engine.begin() as conn:
        conn.exec_driver_sql(f"CREATE TABLE {users} (id integer PRIMARY KEY, name text)")
    yield Case(relay, engine, users)
    engine.dispose()
    if cleanup is not None:
        relay.shutdown()
        flush_all()  # history of this test's tasks, before its schema goes
        cleanup()


def test_commit_stores_the_task_with_the_row(case: Case) -> None:
    with case.engine.begin() as conn:
        conn.exec_driver_sql(f"INSERT INTO {case.users} VALUES (1, 'ada')")
        case.relay.enqueue("user.welcome", {"user": 1}, connection=conn)
        assert case.waiting() == 0  # not visible outside the transaction yet
    assert (case.user_count(), case.waiting()) == (1, 1)


def test_rollback_stores_neither(case: Case) -> None:
    with pytest.raises(RuntimeError), case.engine.begin() as conn:
        conn.exec_driver_sql(f"INSERT INTO {case.users} VALUES (2, 'bob')")
        case.relay.enqueue("user.welcome", {"user": 2}, connection=conn,
                           idempotency_key="user:2")
        raise RuntimeError("the request failed")
    assert (case.user_count(), case.waiting()) == (0, 0)
    # the rolled-back enqueue did not keep the key either
    with case.engine.begin() as conn:
        case.relay.enqueue("user.welcome", {"user": 2}, connection=conn,
                           idempotency_key="user:2")
    assert case.waiting() == 1


def test_a_session_and_an_idempotency_key_in_one_transaction(case: Case) -> None:
    with Session(case.engine) as session:
        session.execute(sa.text(f"INSERT INTO {case.users} VALUES (3, 'cy')"))
        first = case.relay.enqueue("user.welcome", {"user": 3}, connection=session,
                                   idempotency_key="user:3")
        again = case.relay.enqueue("user.welcome", {"user": 3}, connection=session,
                                   idempotency_key="user:3")
        session.commit()
    assert first == again
    assert case.waiting() == 1
    # outside the transaction the key holds too
    assert case.relay.enqueue("user.welcome", {"user": 3}, idempotency_key="user:3") == first


def test_a_worker_runs_a_committed_task(case: Case) -> None:
    case.relay.start(concurrency=1)
    with case.engine.begin() as conn:
        conn.exec_driver_sql(f"INSERT INTO {case.users} VALUES (4, 'di')")
        task_id = case.relay.enqueue("user.welcome", {"user": 4}, connection=conn)
    assert case.relay.celery.AsyncResult(task_id).get(timeout=20) == "welcome 4"


def test_another_database_is_refused(case: Case, tmp_path: Path) -> None:
    if case.relay.store.kind == "sqlite":
        other = sa.create_engine(f"sqlite:///{tmp_path / 'other.db'}")
        match = "SQLite database .*other.db"
    else:
        from tests import server_postgresql as pg

        other = sa.create_engine(
            pg.URL.replace("postgresql://", "postgresql+psycopg://", 1).rsplit("/", 1)[0]
            + "/postgres")
        match = "no such schema"
    with other.begin() as conn, pytest.raises(NotSameDatabase, match=match):
        case.relay.enqueue("user.welcome", {"user": 5}, connection=conn)
    other.dispose()
    assert case.waiting() == 0


def test_other_kinds_are_refused(make_relay, tmp_path: Path) -> None:
    relay = make_relay(f"gorelay+sqlite:///{tmp_path / 'relay.db'}")
    relay.register("user.welcome", _welcome)
    with pytest.raises(OutboxError, match="SQLAlchemy Connection or Session"):
        relay.enqueue("user.welcome", {"user": 1}, connection=object())
    memory = make_relay("gorelay+memory://outbox-test")
    memory.register("user.welcome", _welcome)
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'app.db'}")
    with engine.begin() as conn, pytest.raises(OutboxError, match="SQLite or PostgreSQL"):
        memory.enqueue("user.welcome", {"user": 1}, connection=conn)
