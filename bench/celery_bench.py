"""End-to-end Celery benchmark: gorelay+sqlite against Redis and RabbitMQ.

Run ``python bench/celery_bench.py`` (``--help`` for options).  Every broker
is measured in the same run, phase by phase, so that only the ratios between
brokers are read: the machine is small and shared.  No result backend is used.

Phases, per broker (``gorelay+sqlite`` on a fresh temp file, Redis db 13,
flushed before and after, ``gorelay-redis`` = ``gorelay+redis://`` on Redis db 11
under a fresh key prefix whose keys are deleted afterwards (never flushed),
RabbitMQ on a unique queue and exchange deleted afterwards, ``gorelay-postgres``
= ``gorelay+postgresql://`` in a fresh schema dropped afterwards; a broker whose
server does not answer is skipped with a note; ``--brokers`` picks them):

1. **drain** (``--rounds`` times, brokers interleaved, median round reported):
   publish ``--tasks`` no-op tasks, then start a real
   ``celery -A benchapp worker -P threads -c 4 --without-gossip
   --without-mingle --without-heartbeat -l warning`` subprocess (``--workers``
   of them, default 1, all on the same queue); the rate is
   tasks / (last of the first N task ends - first task start).  Then the
   **RSS** of the worker's process tree (sum of ``VmRSS``) is read, before the
   worker is stopped.
2. **idle**: a fresh worker (same options) runs one ping task, settles
   ``--settle`` seconds, then its CPU time (utime+stime+cutime+cstime from
   ``/proc/<pid>/stat`` over its process tree) is sampled over
   ``--idle-seconds``: reported as % of one core.
3. **latency**, on that same idle worker: ``--latency-samples`` tasks sent one
   at a time, with a random pause of ``--pause-ms`` between them; each records
   (task start - time.time() just before ``send_task``).  p50/p99 in ms.

How completion is observed (see ``bench/benchapp.py``): each task appends one
16-byte ``(t0, t1)`` record with a single ``os.write`` to a file opened
``O_APPEND``; the harness polls the file's size every 20 ms and reads the
timestamps at the end, so the poll rate does not limit the precision.

Targets checked: drain gorelay/redis and gorelay/amqp >= 1.0, drain
gorelay-redis/redis >= 1.2 (issue 4); gorelay idle
CPU < 2 % of one core; gorelay pickup "a few ms", read as p50 <= 5 ms and
p99 <= 10 ms.

Output: Markdown tables on stdout, JSON in ``bench/results/celery_bench.json``
and worker logs in ``bench/results/logs/``.  ``--py-spy`` additionally records
raw py-spy stacks of each worker (distorts the numbers; for profiling only).
Worker subprocesses and /proc readings live in ``bench/benchproc.py``, the
Celery app in ``bench/benchapp.py``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import random
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import urlparse

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchapp  # noqa: E402
import benchproc  # noqa: E402
from benchproc import RESULTS, Worker, read_records  # noqa: E402

URLS = {"redis": "redis://127.0.0.1:6379/13", "amqp": "amqp://guest:guest@127.0.0.1:5672//",
        "gorelay-redis": "gorelay+redis://127.0.0.1:6379/11",
        "gorelay-postgres": "gorelay+postgresql://postgres@127.0.0.1:5432/test"}
BROKERS = ("gorelay", "redis", "amqp", "gorelay-redis", "gorelay-postgres", "gorelay-nohistory")
#: gorelay+sqlite with task history off (``gorelay_history = False``), the baseline
#: of the history-cost target
NO_HISTORY = "gorelay-nohistory"
#: (broker, peer, target) drain ratios the report checks
DRAIN_TARGETS = (("gorelay", "redis", 1.0), ("gorelay", "amqp", 1.0),
                 ("gorelay-redis", "redis", 1.2), ("gorelay-postgres", "redis", 1.0),
                 ("gorelay", NO_HISTORY, 0.8))


# -- brokers --------------------------------------------------------------------
def server_up(url: str) -> bool:
    parts = urlparse(url)
    try:
        socket.create_connection((parts.hostname, parts.port), timeout=1.0).close()
        return True
    except OSError:
        return False


@contextlib.contextmanager
def broker(name: str, workdir: Path):
    """Yield ``(url, queue)`` on a clean broker state; clean up afterwards."""
    queue = f"bench-{uuid.uuid4().hex[:10]}"
    if name in ("gorelay", NO_HISTORY):
        from gorelay_kombu.doorbell import doorbell_dir

        path = workdir / f"{queue}.db"
        try:
            yield f"gorelay+sqlite:///{path}", queue  # path is absolute: four slashes
        finally:
            shutil.rmtree(doorbell_dir(str(path)), ignore_errors=True)
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
    elif name == "gorelay-redis":
        prefix = f"gorelay-bench-{uuid.uuid4().hex[:8]}:"
        base = URLS["gorelay-redis"]
        try:
            yield f"{base}{'&' if '?' in base else '?'}key_prefix={prefix}", queue
        finally:
            delete_prefix(base, prefix)
    elif name == "gorelay-postgres":
        schema = f"gorelay_bench_{uuid.uuid4().hex[:10]}"
        base = URLS["gorelay-postgres"]
        try:
            yield f"{base}{'&' if '?' in base else '?'}schema={schema}", queue
        finally:
            drop_postgres_schema(base, schema)
    elif name == "redis":
        import redis

        client = redis.Redis.from_url(URLS["redis"])
        client.flushdb()
        try:
            yield URLS["redis"], queue
        finally:
            client.flushdb()
            client.close()
    else:
        from kombu import Connection

        try:
            yield URLS["amqp"], queue
        finally:
            with Connection(URLS["amqp"]) as conn:
                channel = conn.channel()
                channel.queue_delete(queue)
                channel.exchange_delete(queue)


def _redis_admin(url: str):
    import redis

    return redis.Redis.from_url(url.removeprefix("gorelay+").split("?", 1)[0])


def delete_prefix(url: str, prefix: str) -> int:
    """Delete the keys under ``prefix`` (a gorelay+redis run's own; no FLUSHDB)."""
    client = _redis_admin(url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        for i in range(0, len(keys), 500):
            client.delete(*keys[i:i + 500])
        return len(keys)
    finally:
        client.close()


def gorelay_redis_leftovers(url: str, queue: str) -> dict[str, int]:
    """Messages left in a gorelay+redis queue, by state (after the worker stopped)."""
    from gorelay_kombu.storage.redis import RedisStore

    store = RedisStore(url.split("?", 1)[0].removeprefix("gorelay+"),
                       {"key_prefix": url.split("key_prefix=", 1)[1].split("&", 1)[0]})
    try:
        keys = store._keys(queue)
        client = store._client()
        counts = {"ready": sum(client.zcard(k) for k in keys[:3]),
                  "scheduled": client.zcard(keys[3]), "leased": client.zcard(keys[4])}
    finally:
        store.close()
    return {state: n for state, n in counts.items() if n}


def _postgres_admin(url: str):
    import psycopg

    return psycopg.connect(url.removeprefix("gorelay+").split("?", 1)[0], autocommit=True)


def drop_postgres_schema(url: str, schema: str) -> None:
    """Drop a gorelay+postgresql run's own schema (never anything else)."""
    from psycopg import sql

    with _postgres_admin(url) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def gorelay_postgres_leftovers(url: str) -> dict[str, int]:
    """Messages left in a gorelay+postgresql schema, by state (after the workers stopped)."""
    from psycopg import sql

    schema = url.split("schema=", 1)[1].split("&", 1)[0]
    with _postgres_admin(url) as conn:
        rows = conn.execute(sql.SQL("SELECT state, count(*) FROM {}.messages GROUP BY state")
                            .format(sql.Identifier(schema))).fetchall()
    return {str(state): count for state, count in rows}


def gorelay_leftovers(url: str) -> dict[str, int]:
    """Rows left in a gorelay store, by state (after the worker stopped)."""
    conn = sqlite3.connect(url.split("sqlite://", 1)[1])
    try:
        rows = conn.execute("SELECT state, count(*) FROM gorelay_messages GROUP BY state")
        return {str(state): count for state, count in rows}
    finally:
        conn.close()


# -- phases ---------------------------------------------------------------------
def drain_phase(name: str, args: argparse.Namespace, workdir: Path) -> dict:
    n = args.tasks
    with broker(name, workdir) as (url, queue):
        app = benchapp.make_app(url, queue)
        try:
            t0 = time.perf_counter()
            with app.producer_or_acquire() as producer:
                for _ in range(n):
                    app.send_task("bench.noop", producer=producer)
            publish_rate = n / (time.perf_counter() - t0)
        finally:
            app.close()
        with contextlib.ExitStack() as stack:  # --workers processes, one records file
            labels = [f"{name}-drain"] + [f"{name}-drain{i}" for i in range(2, args.workers + 1)]
            workers = [stack.enter_context(Worker(label, url, queue, workdir))
                       for label in labels]
            worker = workers[0]
            stack.enter_context(benchproc.py_spy(args.py_spy, worker.pid, f"{name}-drain"))
            records = worker.records(worker.out, n, timeout=max(120.0, n / 20))
            for other in workers[1:]:
                other.check_alive()
            rss = sum(benchproc.tree_rss_bytes(w.pid) for w in workers)
        executed = len(read_records(worker.out))  # > n would mean duplicates
        leftovers = (gorelay_leftovers(url) if name in ("gorelay", NO_HISTORY)
                     else gorelay_redis_leftovers(url, queue) if name == "gorelay-redis"
                     else gorelay_postgres_leftovers(url) if name == "gorelay-postgres"
                     else None)
    first_start = min(start for start, _ in records)
    nth_end = sorted(end for _, end in records)[n - 1]
    return {"tasks": n, "executed": executed, "publish_per_s": publish_rate,
            "drain_s": nth_end - first_start, "drain_per_s": n / (nth_end - first_start),
            "rss_bytes": rss, "store_leftovers": leftovers}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, math.ceil(q / 100 * len(ordered)) - 1))]


def idle_phase(name: str, args: argparse.Namespace, workdir: Path) -> dict:
    lo, hi = args.pause_ms
    rng = random.Random(args.seed)
    with broker(name, workdir) as (url, queue):
        app = benchapp.make_app(url, queue)
        try:
            with Worker(f"{name}-idle", url, queue, workdir) as worker:
                with app.producer_or_acquire() as producer:
                    app.send_task("bench.noop", producer=producer)  # ready = ping done
                worker.records(worker.out, 1, timeout=60)
                time.sleep(args.settle)
                with benchproc.py_spy(args.py_spy, worker.pid, f"{name}-idle"):
                    cpu0, t0 = benchproc.tree_cpu_seconds(worker.pid), time.monotonic()
                    time.sleep(args.idle_seconds)
                    cpu1, t1 = benchproc.tree_cpu_seconds(worker.pid), time.monotonic()
                with app.producer_or_acquire() as producer:
                    for _ in range(args.latency_samples):
                        app.send_task("bench.latency", args=[time.time()], producer=producer)
                        time.sleep(rng.uniform(lo, hi) / 1000)
                records = worker.records(worker.lat, args.latency_samples, timeout=60)
        finally:
            app.close()
    lat_ms = [(start - sent) * 1000 for sent, start in records]
    return {"idle_window_s": t1 - t0, "idle_cpu_s": cpu1 - cpu0,
            "idle_cpu_pct": (cpu1 - cpu0) / (t1 - t0) * 100, "latency_samples": len(lat_ms),
            "latency_p50_ms": percentile(lat_ms, 50), "latency_p99_ms": percentile(lat_ms, 99),
            "latency_max_ms": max(lat_ms), "latency_ms": lat_ms}


# -- report ---------------------------------------------------------------------
def table(headers: list[str], rows: list[list[object]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def report(results: dict, args: argparse.Namespace) -> str:
    drain, idle, parts, targets = results["drain"], results["idle"], [], []
    if drain:
        workers = "" if args.workers == 1 else f", {args.workers} worker processes"
        parts.append(f"### Drain ({args.tasks} no-op tasks, -P threads -c 4{workers})\n\n"
                     + table(
            ["broker", "executed", "publish tasks/s", "drain s", "drain tasks/s", "worker RSS MiB",
             "all rounds tasks/s"],
            [[b, r["executed"], f"{r['publish_per_s']:.0f}", f"{r['drain_s']:.2f}",
              f"{r['drain_per_s']:.0f}", f"{r['rss_bytes'] / 2**20:.1f}",
              " ".join(f"{x:.0f}" for x in r["round_rates"])] for b, r in drain.items()]))
        for mine, other, want in DRAIN_TARGETS:
            if mine in drain and other in drain:
                ratio = drain[mine]["drain_per_s"] / drain[other]["drain_per_s"]
                results["ratios"][f"drain_{mine}_over_{other}".replace("-", "_")] = ratio
                targets.append([f"drain {mine}/{other} >= {want:g}", f"{ratio:.2f}",
                                "yes" if ratio >= want else "NO"])
    if idle:
        parts.append(f"### Idle worker ({args.idle_seconds:g} s window) and pickup latency "
                     f"({args.latency_samples} tasks, {args.pause_ms[0]:g}-{args.pause_ms[1]:g} "
                     "ms apart)\n\n" + table(
                         ["broker", "idle CPU % of one core", "pickup p50 ms", "pickup p99 ms",
                          "pickup max ms"],
                         [[b, f"{r['idle_cpu_pct']:.2f}", f"{r['latency_p50_ms']:.2f}",
                           f"{r['latency_p99_ms']:.2f}", f"{r['latency_max_ms']:.2f}"]
                          for b, r in idle.items()]))
        if "gorelay" in idle:
            g = idle["gorelay"]
            targets.append(["gorelay idle CPU < 2%", f"{g['idle_cpu_pct']:.2f}%",
                            "yes" if g["idle_cpu_pct"] < 2.0 else "NO"])
            ok = g["latency_p50_ms"] <= 5 and g["latency_p99_ms"] <= 10
            targets.append(["gorelay pickup 'a few ms' (p50 <= 5, p99 <= 10)",
                            f"p50 {g['latency_p50_ms']:.2f} / p99 {g['latency_p99_ms']:.2f} ms",
                            "yes" if ok else "NO"])
    if targets:
        parts.append("### Targets\n\n" + table(["target", "measured", "met"], targets))
        results["targets"] = targets
    notes = [f"- skipped {b}: {why}" for b, why in results["skipped"].items()]
    notes += [f"- {b}: {len(r['store_leftovers'])} state(s) of rows left in the store: "
              f"{r['store_leftovers']}" for b, r in drain.items() if r.get("store_leftovers")]
    notes += [f"- {b}: executed {r['executed']} tasks for {r['tasks']} published"
              for b, r in drain.items() if r["executed"] != r["tasks"]]
    if notes:
        parts.append("### Notes\n\n" + "\n".join(notes))
    return "\n\n".join(parts)


def package_state() -> dict:
    """Which gorelay_kombu was measured: git HEAD plus a hash of its working-tree sources."""
    import hashlib

    import gorelay_kombu

    root = Path(gorelay_kombu.__file__).resolve().parent
    digest = hashlib.sha1()
    for path in sorted(root.rglob("*.py")):
        digest.update(path.read_bytes())
    head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                          text=True).stdout.strip()
    return {"git_head": head, "sources_sha1": digest.hexdigest()[:12], "path": str(root)}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tasks", type=int, default=5000, help="tasks in the drain phase")
    p.add_argument("--rounds", type=int, default=1,
                   help="drain rounds (brokers interleaved); the median round is reported")
    p.add_argument("--idle-seconds", type=float, default=20.0, help="idle CPU window")
    p.add_argument("--settle", type=float, default=3.0, help="seconds before the idle window")
    p.add_argument("--latency-samples", type=int, default=200)
    p.add_argument("--pause-ms", type=lambda s: tuple(float(x) for x in s.split(",")),
                   default=(20.0, 50.0), help="LO,HI random pause between latency tasks")
    p.add_argument("--brokers", default="gorelay,redis,amqp",
                   help=f"comma list of {', '.join(BROKERS)}")
    p.add_argument("--phases", default="drain,idle", help="drain and/or idle (idle+latency)")
    p.add_argument("--redis-url", default=URLS["redis"], help="its db is flushed!")
    p.add_argument("--amqp-url", default=URLS["amqp"])
    p.add_argument("--gorelay-redis-url", default=URLS["gorelay-redis"],
                   help="gorelay+redis:// URL; each run uses its own key_prefix, deleted after")
    p.add_argument("--gorelay-postgres-url", default=URLS["gorelay-postgres"],
                   help="gorelay+postgresql:// URL; each run uses its own schema, dropped after")
    p.add_argument("--workers", type=int, default=1,
                   help="worker processes in the drain phase (each -P threads -c 4)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--py-spy", action="store_true", help="record py-spy stacks (profiling only)")
    p.add_argument("--json", type=Path, default=RESULTS / "celery_bench.json")
    args = p.parse_args(argv)
    args.brokers = [b.strip() for b in args.brokers.split(",") if b.strip()]
    unknown = set(args.brokers) - set(BROKERS)
    counts = (args.tasks, args.rounds, args.latency_samples, args.workers)
    if unknown or min(counts) < 1 or len(args.pause_ms) != 2:
        p.error(f"bad arguments (unknown brokers: {sorted(unknown)})")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    URLS.update({"redis": args.redis_url, "amqp": args.amqp_url,
                 "gorelay-redis": args.gorelay_redis_url,
                 "gorelay-postgres": args.gorelay_postgres_url})
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the finally blocks
    import celery
    import kombu

    results: dict = {
        "meta": {"argv": sys.argv, "started": time.time(), "python": platform.python_version(),
                 "celery": celery.__version__, "kombu": kombu.__version__,
                 "cpus": os.cpu_count(), "loadavg_start": os.getloadavg(),
                 "gorelay_kombu": package_state()},
        "args": {k: v for k, v in vars(args).items() if k != "json"},
        "drain": {}, "idle": {}, "ratios": {}, "skipped": {}}
    brokers = []
    for name in args.brokers:
        if name in URLS and not server_up(URLS[name]):
            results["skipped"][name] = f"no server at {URLS[name]}"
            print(f"note: skipping {name}: no server at {URLS[name]}", file=sys.stderr)
        else:
            brokers.append(name)
    workdir = Path(tempfile.mkdtemp(prefix="celery-bench-"))
    try:
        for phase, run, rounds in (("drain", drain_phase, args.rounds), ("idle", idle_phase, 1)):
            if phase not in args.phases:
                continue
            runs: dict[str, list[dict]] = {name: [] for name in brokers}
            for round_ in range(rounds):  # brokers interleaved within each round
                for name in brokers:
                    os.environ["BENCH_HISTORY"] = "0" if name == NO_HISTORY else "1"
                    began = time.monotonic()
                    runs[name].append(run(name, args, workdir))
                    print(f"... {phase} {name} round {round_ + 1}/{rounds}: "
                          f"{time.monotonic() - began:.1f} s", file=sys.stderr, flush=True)
            for name, done in runs.items():  # the median round by rate (the only one if 1)
                done.sort(key=lambda r: r.get("drain_per_s", 0.0))
                results[phase][name] = done[len(done) // 2]
                if phase == "drain":
                    results[phase][name]["round_rates"] = [r["drain_per_s"] for r in done]
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    results["meta"]["loadavg_end"] = os.getloadavg()
    text = report(results, args)
    print(text)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2, default=str))
    print(f"\nJSON: {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
