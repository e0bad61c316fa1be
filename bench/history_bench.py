"""Task-history write cost: :meth:`History.record` as the Celery recorder calls it.

Run ``python bench/history_bench.py`` (``--help`` for options).  For each store
(``--stores``, default ``sqlite,postgres``; a server that does not answer is
skipped) it records ``--tasks`` tasks the way a producer and a worker do:

* **producer**: one ``sent`` event per task, with the fields
  ``compat/signals.py`` gives it (name, queue, lane, attempt, args, kwargs,
  root_id), in batches of ``--batch`` tasks;
* **worker**: ``received``, ``started`` and ``succeeded`` per task (name,
  worker, attempt, result, runtime), in batches of ``--batch`` tasks, i.e.
  ``3 * --batch`` events: what one flush of a worker's recorder holds.

It reports events/s and the CPU seconds this process spent per task (Python
plus SQLite, which runs in-process; for PostgreSQL the server's share is not
included), best of ``--repeat`` runs, each on a fresh SQLite file / schema.
CPU time is what history takes from a producer or worker process, and it is
steadier than wall time on a shared machine.  Writes
``bench/results/history_bench.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gorelay_kombu.history import History, TaskEvent  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
POSTGRES_URL = os.environ.get("GORELAY_TEST_POSTGRES_URL",
                              "postgresql://postgres@127.0.0.1:5432/test")


@contextmanager
def sqlite_history() -> Iterator[History]:
    from gorelay_kombu.storage.sqlite import SQLiteStore

    with tempfile.TemporaryDirectory() as tmp:
        store = SQLiteStore(os.path.join(tmp, "relay.db"))
        try:
            yield store.history()
        finally:
            store.close()


@contextmanager
def postgres_history() -> Iterator[History]:
    import psycopg
    from psycopg import sql

    from gorelay_kombu.storage.postgres import PostgresStore

    schema = f"gorelay_bench_{uuid.uuid4().hex[:10]}"
    store = PostgresStore(POSTGRES_URL, {"schema": schema})
    try:
        yield store.history()
    finally:
        store.close()
        with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
                sql.Identifier(schema)))


def postgres_up() -> bool:
    try:
        import psycopg

        psycopg.connect(POSTGRES_URL, connect_timeout=3).close()
        return True
    except Exception:
        return False


STORES: dict[str, tuple[Callable[[], Any], Callable[[], bool]]] = {
    "sqlite": (sqlite_history, lambda: True),
    "postgres": (postgres_history, postgres_up),
}


def producer_batches(ids: list[str], batch: int, t0: float) -> list[list[TaskEvent]]:
    return [[TaskEvent(t, "sent", t0 + i * 1e-4, {
        "name": "bench.noop", "queue": "celery", "lane": 1, "attempt": 0, "args": "[]",
        "kwargs": "{}", "root_id": t}) for i, t in enumerate(ids[j:j + batch], start=j)]
        for j in range(0, len(ids), batch)]


def worker_batches(ids: list[str], batch: int, t0: float) -> list[list[TaskEvent]]:
    out = []
    for j in range(0, len(ids), batch):
        events = []
        for i, t in enumerate(ids[j:j + batch], start=j):
            at = t0 + 1 + i * 1e-4
            events += [
                TaskEvent(t, "received", at, {"name": "bench.noop", "worker": "w@host"},
                          "w@host"),
                TaskEvent(t, "started", at + 1e-5, {"name": "bench.noop", "attempt": 0,
                                                    "worker": "w@host"}, "w@host"),
                TaskEvent(t, "succeeded", at + 2e-5, {"result": "null", "runtime": 1e-5,
                                                      "worker": "w@host"}, "w@host"),
            ]
        out.append(events)
    return out


def run_once(open_history: Callable[[], Any], tasks: int, batch: int) -> dict[str, float]:
    ids = [str(uuid.uuid4()) for _ in range(tasks)]
    t0 = time.time()
    phases = {"producer": producer_batches(ids, batch, t0),
              "worker": worker_batches(ids, batch, t0)}
    result: dict[str, float] = {}
    with open_history() as history:
        for phase, batches in phases.items():
            events = sum(len(b) for b in batches)
            wall, cpu = time.perf_counter(), time.process_time()
            for b in batches:
                history.record(b)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            result[f"{phase}_events_per_s"] = events / wall
            result[f"{phase}_cpu_us_per_task"] = cpu / tasks * 1e6
        record = history.task(ids[-1])
        assert record is not None and record.state == "SUCCESS", record
        assert history.counts()["SUCCESS"] == tasks
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--stores", default="sqlite,postgres", help="comma list: sqlite, postgres")
    p.add_argument("--tasks", type=int, default=20000)
    p.add_argument("--batch", type=int, default=400,
                   help="tasks per record() call (a worker's flush at ~4000 tasks/s)")
    p.add_argument("--repeat", type=int, default=3, help="runs per store; the best is kept")
    p.add_argument("--json", default=str(RESULTS / "history_bench.json"))
    args = p.parse_args()
    rows: dict[str, dict[str, float]] = {}
    for name in args.stores.split(","):
        opener, up = STORES[name]
        if not up():
            print(f"({name}: server not answering, skipped)")
            continue
        runs = [run_once(opener, args.tasks, args.batch) for _ in range(args.repeat)]
        rows[name] = {k: (min if "cpu" in k else max)(r[k] for r in runs) for k in runs[0]}
    print(f"### History.record ({args.tasks} tasks, {args.batch} tasks per batch, "
          f"best of {args.repeat})\n")
    print("| store | producer events/s | producer CPU µs/task | worker events/s "
          "| worker CPU µs/task |")
    print("|---|---|---|---|---|")
    for name, r in rows.items():
        print(f"| {name} | {r['producer_events_per_s']:.0f} | "
              f"{r['producer_cpu_us_per_task']:.1f} | {r['worker_events_per_s']:.0f} | "
              f"{r['worker_cpu_us_per_task']:.1f} |")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps({"args": vars(args), "results": rows}, indent=2))
    print(f"\nJSON: {args.json}")


if __name__ == "__main__":
    main()
