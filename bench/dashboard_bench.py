"""Dashboard response time with 1,000 vs 1,000,000 tasks in history, same run.

    python bench/dashboard_bench.py                       # SQLite
    python bench/dashboard_bench.py --stores sqlite,postgresql,redis
    python bench/dashboard_bench.py --small 1000 --big 100000 --requests 20

Fills two fresh stores per kind with task history (``History.record`` in
batches: 90% succeeded, 8% failed, 1% dead, 1% pending, over 20 task
names and 5 queues, random uuid4 ids, one day of timestamps) plus the same
1,000 queued messages and 4 workers in both, then times full page renders
through the Flask test client (routing, queries, Jinja), interleaving the
two sizes round by round:

* ``overview``: ``/`` (counters, queue_stats, throughput, workers);
* ``filtered list``: ``/tasks?state=FAILURE&queue=q3`` (counts, names,
  queues and one page of 50);
* ``detail``: ``/tasks/<id>`` of a failed task (record and timeline);
* and their JSON twins ``/api/overview``, ``/api/tasks?...``,
  ``/api/tasks/<id>``.

The claim (issue 7): each answers with the big history within 3x its time
with the small one.  Prints the medians and the ratio big/small per route
(a ratio, not a threshold); writes ``bench/results/dashboard_bench.json``.
Server stores use ``GORELAY_BENCH_POSTGRES_URL`` (default
``postgresql://postgres@127.0.0.1:5432/test``, a fresh schema dropped after)
and ``GORELAY_BENCH_REDIS_URL`` (default ``redis://127.0.0.1:6379/14``, a
fresh key prefix deleted after).  On PostgreSQL the fresh tables are
ANALYZEd before timing (what autovacuum does after a bulk load; see
:func:`settle`).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from typing import Any

from gorelay_kombu.dashboard import create_app
from gorelay_kombu.history import TaskEvent, WorkerBeat
from gorelay_kombu.storage import NewMessage, open_store

PG_URL = os.environ.get("GORELAY_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("GORELAY_BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
HERE = os.path.dirname(os.path.abspath(__file__))
BATCH = 5_000
QUEUED = 1_000
NAMES = [f"app.tasks.job_{i:02d}" for i in range(20)]
QUEUES = [f"q{i}" for i in range(5)]
FILTER = "state=FAILURE&queue=q3"


def fill(history: Any, n: int, seed: int) -> str:
    """Record ``n`` tasks; return the id of a failed one (for the detail page)."""
    rng = random.Random(seed)
    now = time.time()
    batch: list[TaskEvent] = []
    probe = ""
    for i in range(n):
        tid = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        at = now - 86400 + 86400 * i / n
        queue = QUEUES[i % len(QUEUES)]
        batch.append(TaskEvent(tid, "sent", at, {
            "name": NAMES[i % len(NAMES)], "queue": queue, "lane": 1,
            "args": json.dumps([i, f"user{i}@example.com"]), "kwargs": "{}"}))
        roll = rng.random()
        if roll < 0.01:
            pass  # still pending
        elif roll < 0.02:
            batch.append(TaskEvent(tid, "dead", at + 0.2, {"exc_type": "TimeoutError"}))
        elif roll < 0.10:
            batch.append(TaskEvent(tid, "started", at + 0.05, {"worker": "w1@bench"}))
            batch.append(TaskEvent(tid, "failed", at + 0.1, {
                "exc_type": "ValueError", "exc_message": "boom", "runtime": 0.05,
                "traceback": "Traceback (most recent call last):\nValueError: boom"}))
            if queue == "q3" and (not probe or i >= n // 2 > 0 and probe < tid):
                probe = tid
        else:
            batch.append(TaskEvent(tid, "succeeded", at + 0.1,
                                   {"runtime": rng.uniform(0.001, 2), "result": "true"}))
        if len(batch) >= BATCH:
            history.record(batch)
            batch = []
    if batch:
        history.record(batch)
    history.heartbeat([WorkerBeat(f"w{i}@bench", now, pid=100 + i, pool="prefork",
                                  concurrency=4, queues=tuple(QUEUES)) for i in range(4)])
    return probe


def queue_messages(store: Any) -> None:
    for queue in QUEUES:
        store.declare_queue(queue)
    store.put_many([NewMessage(QUEUES[i % len(QUEUES)], b'{"body": "x"}', lane=i % 3)
                    for i in range(QUEUED)])


def settle(kind: str, label: str, tag: str) -> None:
    """PostgreSQL: ANALYZE the fresh tables, as autovacuum does within a minute of a bulk
    load (this machine's test server runs with ``autovacuum = off``; without statistics
    the planner guesses 1,000 rows per filter and the combined filter turns into a
    bitmap AND plus a sort over every matching row)."""
    if kind != "postgresql":
        return
    import psycopg
    from psycopg import sql

    with psycopg.connect(PG_URL, autocommit=True) as conn:
        rows = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = %s",
                            (f"gorelay_bench_{tag}_{label}",)).fetchall()
        for (table,) in rows:
            conn.execute(sql.SQL("ANALYZE {}.{}").format(
                sql.Identifier(f"gorelay_bench_{tag}_{label}"), sql.Identifier(table)))


def urls(kind: str, tmp: str, label: str, tag: str) -> tuple[str, Callable[[], None]]:
    """A fresh store URL of ``kind`` and a function that removes what it holds."""
    if kind == "sqlite":
        return f"gorelay+sqlite:///{os.path.join(tmp, label + '.db')}", lambda: None
    if kind == "postgresql":
        schema = f"gorelay_bench_{tag}_{label}"

        def drop() -> None:
            import psycopg
            from psycopg import sql

            with psycopg.connect(PG_URL, autocommit=True) as conn:
                conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
                    sql.Identifier(schema)))
        return f"gorelay+{PG_URL}?schema={schema}", drop
    if kind == "redis":
        prefix = f"gorelay-bench-{tag}-{label}:"

        def delete() -> None:
            import redis

            client = redis.Redis.from_url(REDIS_URL)
            keys = list(client.scan_iter(match=f"{prefix}*", count=5000))
            for i in range(0, len(keys), 1000):
                client.delete(*keys[i:i + 1000])
        return f"gorelay+{REDIS_URL}?key_prefix={prefix}", delete
    raise SystemExit(f"unknown store {kind!r}: use sqlite, postgresql or redis")


def time_route(client: Any, path: str) -> float:
    start = time.perf_counter()
    response = client.get(path)
    elapsed = time.perf_counter() - start
    if response.status_code != 200:
        raise SystemExit(f"{path}: HTTP {response.status_code}")
    return elapsed


def bench_kind(kind: str, args: argparse.Namespace, tmp: str) -> list[dict[str, Any]]:
    tag = uuid.uuid4().hex[:8]
    sites: dict[str, tuple[Any, str, Callable[[], None]]] = {}
    try:
        for label, n in (("small", args.small), ("big", args.big)):
            url, drop = urls(kind, tmp, label, tag)
            store = open_store(url)
            started = time.perf_counter()
            probe = fill(store.history(), n, seed=n)
            queue_messages(store)
            settle(kind, label, tag)
            print(f"  {kind} {label}: {n:,} tasks recorded in "
                  f"{time.perf_counter() - started:.0f} s", flush=True)
            app = create_app(store)
            sites[label] = (app, probe, drop)
            store_holder[label] = store
        routes = {
            "overview": lambda probe: "/",
            "filtered list": lambda probe: f"/tasks?{FILTER}",
            "detail": lambda probe: f"/tasks/{probe}",
            "overview (JSON)": lambda probe: "/api/overview",
            "filtered list (JSON)": lambda probe: f"/api/tasks?{FILTER}",
            "detail (JSON)": lambda probe: f"/api/tasks/{probe}",
        }
        samples: dict[tuple[str, str], list[float]] = {}
        clients = {label: site[0].test_client() for label, site in sites.items()}
        for _ in range(args.warmup):
            for label, (_app, probe, _) in sites.items():
                for route in routes.values():
                    time_route(clients[label], route(probe))
        for _ in range(args.requests):
            for route_name, route in routes.items():
                for label, (_app, probe, _) in sites.items():
                    samples.setdefault((route_name, label), []).append(
                        time_route(clients[label], route(probe)))
        rows = []
        for route_name in routes:
            small = statistics.median(samples[(route_name, "small")])
            big = statistics.median(samples[(route_name, "big")])
            rows.append({"store": kind, "route": route_name, "small_ms": small * 1e3,
                         "big_ms": big * 1e3, "ratio": big / small})
        return rows
    finally:
        for label, (app, _probe, drop) in sites.items():
            app.extensions["gorelay_dashboard"].close()
            store_holder.pop(label).close()
            drop()


store_holder: dict[str, Any] = {}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=1_000)
    parser.add_argument("--big", type=int, default=1_000_000)
    parser.add_argument("--stores", default="sqlite")
    parser.add_argument("--requests", type=int, default=30, help="timed requests per route")
    parser.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for kind in args.stores.split(","):
            rows.extend(bench_kind(kind.strip(), args, tmp))
    print(f"\n| store | route | {args.small:,} tasks, ms | {args.big:,} tasks, ms | ratio |")
    print("| --- | --- | ---: | ---: | ---: |")
    for r in rows:
        print(f"| {r['store']} | {r['route']} | {r['small_ms']:.2f} | {r['big_ms']:.2f} | "
              f"**{r['ratio']:.2f}×** |")
    worst = max(rows, key=lambda r: r["ratio"])
    print(f"\nworst ratio: {worst['ratio']:.2f}× ({worst['store']}, {worst['route']}); "
          f"target ≤ 3× with {args.big // args.small:,}× the tasks")
    out = os.path.join(HERE, "results")
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "dashboard_bench.json"), "w") as f:
        json.dump({"small": args.small, "big": args.big, "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
