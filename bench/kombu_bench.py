"""Kombu-level publish/consume throughput of gorelay+sqlite against its peers.

One process, one kombu ``Connection`` per transport: gorelay+sqlite and
sqla+sqlite (fresh temp files), redis:// (db ``--redis-db``, flushed before
and after), amqp:// (``confirm_publish=True``; fresh queue, deleted after),
memory://.  A transport whose server is down is reported as skipped.

* publish: ``--messages`` JSON bodies of ~``--body-bytes`` bytes, one
  ``Producer.publish`` each, committed before it returns (SQLite: a commit
  per message; amqp: a broker confirm; redis/memory: no commit).
* consume: a ``Consumer`` with ``prefetch_count=100`` acking each message via
  ``Connection.drain_events``; the clock stops at the last ack.

Rates are msgs/s: the **best** (default) or **median** (``--stat``) of
``--repeat`` rounds, run interleaved across transports after an unreported
warm-up round; a second table gives the median of the same-round ratios
(round k of gorelay against round k of the peer, run next to each other).
Each round must consume every published id exactly once and
leave nothing (``queue_declare`` count 0, ``get`` empty, and no rows in
gorelay's file at the end).  Targets, gorelay+sqlite / peer for publish and
consume: >= 20x sqla+sqlite, >= 2x redis, >= 0.4x memory.

Run::

    python bench/kombu_bench.py                       # 5000 messages, best of 3
    python bench/kombu_bench.py --messages 500 --repeat 1 --warmup 50
    python bench/kombu_bench.py --extra 'gorelay FULL=gorelay+sqlite:///{tmp}/f.db?synchronous=FULL'

Prints Markdown tables; writes ``bench/results/kombu_bench.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any

import kombu
from kombu import Connection, Consumer, Exchange, Producer, Queue

import gorelay_kombu  # noqa: F401  (registers gorelay+sqlite://)

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
TARGETS = {"sqla+sqlite": 20.0, "redis": 2.0, "memory": 0.4}  # gorelay / peer, both phases
PHASES = ("publish", "consume")


@dataclass
class Peer:
    name: str
    url: str
    options: dict[str, Any] = field(default_factory=dict)
    server: tuple[str, int] | None = None  # must accept TCP, or the peer is skipped
    redis_db: int | None = None  # flushed before and after
    sqlite_file: str | None = None  # gorelay: must hold no message rows at the end


@dataclass
class Result:
    name: str
    url: str
    skipped: str | None = None
    publish: list[float] = field(default_factory=list)
    consume: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def rate(self, phase: str, stat: str) -> float | None:
        values = getattr(self, phase)
        if not values:
            return None
        return max(values) if stat == "best" else statistics.median(values)


def make_bodies(count: int, size: int) -> list[dict[str, Any]]:
    """JSON-able bodies whose serialized size is ``size`` bytes."""
    bodies = []
    for i in range(count):
        body: dict[str, Any] = {"id": i, "task": "bench.add", "args": [i, i + 1], "pad": ""}
        body["pad"] = "x" * max(size - len(json.dumps(body)), 0)
        bodies.append(body)
    return bodies


def server_up(address: tuple[str, int]) -> bool:
    try:
        socket.create_connection(address, timeout=1.0).close()
        return True
    except OSError:
        return False


def flush_redis(db: int) -> None:
    import redis

    redis.Redis(host="127.0.0.1", port=6379, db=db).flushdb()


def make_peers(args: argparse.Namespace, tmp: str) -> list[Peer]:
    gorelay_file = os.path.join(tmp, "gorelay.db")
    peers = [
        Peer("gorelay+sqlite", f"gorelay+sqlite:///{gorelay_file}", sqlite_file=gorelay_file),
        Peer("sqla+sqlite", f"sqla+sqlite:///{os.path.join(tmp, 'sqla.db')}"),
        Peer("redis", f"redis://127.0.0.1:6379/{args.redis_db}", server=("127.0.0.1", 6379),
             redis_db=args.redis_db),
        Peer("amqp", "amqp://guest:guest@127.0.0.1:5672//", {"confirm_publish": True},
             server=("127.0.0.1", 5672)),
        Peer("memory", "memory://"),
    ]
    if args.transports:
        wanted = set(args.transports.split(","))
        peers = [p for p in peers if p.name in wanted or p.name.split("+")[0] in wanted]
    for spec in args.extra:  # NAME=URL, always run
        name, _, url = spec.partition("=")
        peers.append(Peer(name, url.replace("{tmp}", tmp)))
    return peers


class Bench:
    """One open connection, exchange and fresh queue for one transport."""

    def __init__(self, peer: Peer, prefetch: int, idle_timeout: float) -> None:
        self.peer, self.prefetch, self.idle_timeout = peer, prefetch, idle_timeout
        tag = uuid.uuid4().hex[:8]
        self.exchange = Exchange(f"bench-x-{tag}", type="direct")
        self.queue = Queue(f"bench-q-{tag}", self.exchange, routing_key=f"bench-{tag}")
        if peer.redis_db is not None:
            flush_redis(peer.redis_db)
        self.conn = Connection(peer.url, transport_options=dict(peer.options))
        self.conn.ensure_connection(max_retries=1)
        self.pub_channel, self.con_channel = self.conn.channel(), self.conn.channel()
        self.queue(self.pub_channel).declare()
        self.producer = Producer(self.pub_channel, exchange=self.exchange,
                                 routing_key=self.queue.routing_key, serializer="json")

    def round(self, bodies: list[dict[str, Any]]) -> tuple[float, float, list[str]]:
        """Publish then consume ``bodies``; return (publish/s, consume/s, errors)."""
        n, publish = len(bodies), self.producer.publish
        start = time.perf_counter()
        for body in bodies:
            publish(body, retry=False)
        pub_rate = n / (time.perf_counter() - start)

        seen: set[int] = set()
        received = 0

        def on_message(body: Any, message: Any) -> None:
            nonlocal received
            received += 1
            seen.add(body["id"])
            message.ack()

        errors: list[str] = []
        drain, timeout = self.conn.drain_events, self.idle_timeout
        with Consumer(self.con_channel, queues=[self.queue], callbacks=[on_message],
                      prefetch_count=self.prefetch, accept=["json"]):
            start = time.perf_counter()
            try:
                while received < n:
                    drain(timeout=timeout)
            except TimeoutError:  # socket.timeout
                errors.append(f"timed out after {received} of {n} messages")
            con_rate = received / (time.perf_counter() - start)
        if received != len(seen):
            errors.append(f"{received - len(seen)} duplicate deliveries")
        if seen != {b["id"] for b in bodies}:
            errors.append(f"consumed {len(seen)} distinct ids, expected {n}")
        if left := self.left():
            errors.append(f"{left} messages left in the queue")
        return pub_rate, con_rate, errors

    def left(self) -> int:
        """Messages still deliverable after a round (acking any found)."""
        bound = self.queue(self.con_channel)
        _, count, _ = bound.queue_declare()  # not passive: redis calls empty queues missing
        extra = 0
        while (message := bound.get(accept=["json"])) is not None:
            message.ack()
            extra += 1
        return max(count or 0, extra)

    def close(self) -> list[str]:
        errors: list[str] = []
        try:
            self.queue(self.pub_channel).delete()
        except Exception as exc:  # noqa: BLE001 - report, do not crash the run
            errors.append(f"queue delete failed: {exc!r}")
        try:
            self.conn.release()
        except Exception as exc:  # noqa: BLE001
            errors.append(f"connection close failed: {exc!r}")
        if self.peer.redis_db is not None:
            flush_redis(self.peer.redis_db)
        if self.peer.sqlite_file:
            db = sqlite3.connect(self.peer.sqlite_file)
            rows = db.execute("SELECT count(*) FROM gorelay_messages").fetchone()[0]
            db.close()
            if rows:
                errors.append(f"{rows} message rows left in the SQLite file")
        return errors


def measure(peers: list[Peer], args: argparse.Namespace) -> dict[str, Result]:
    """Warm up every peer, then run ``args.repeat`` rounds, interleaved, and close them.

    A peer whose server is down or that fails to start is reported as skipped.
    """
    bodies = make_bodies(args.messages, args.body_bytes)
    warm = make_bodies(args.warmup, args.body_bytes)
    results: dict[str, Result] = {}
    benches: dict[str, Bench] = {}
    try:
        for peer in peers:
            result = results[peer.name] = Result(peer.name, peer.url)
            if peer.server and not server_up(peer.server):
                result.skipped = f"server {peer.server[0]}:{peer.server[1]} is down"
                continue
            try:
                bench = benches[peer.name] = Bench(peer, args.prefetch, args.idle_timeout)
                if warm:
                    result.errors += [f"warm-up: {e}" for e in bench.round(warm)[2]]
            except Exception as exc:  # noqa: BLE001 - a broken peer is skipped
                result.skipped = f"{type(exc).__name__}: {exc}"
        for rep in range(1, args.repeat + 1):
            for name, bench in benches.items():  # interleaved: noise hits all alike
                result = results[name]
                if result.skipped:
                    continue
                try:
                    pub, con, errors = bench.round(bodies)
                except Exception as exc:  # noqa: BLE001 - e.g. the server went away
                    result.errors.append(f"round {rep}: {exc!r}")
                    continue
                result.publish.append(pub)
                result.consume.append(con)
                result.errors += [f"round {rep}: {e}" for e in errors]
                print(f"  round {rep} {name:16} publish {pub:9.0f}/s  consume {con:9.0f}/s",
                      file=sys.stderr, flush=True)
    finally:
        for name, bench in benches.items():
            results[name].errors += bench.close()
    return results


def run(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="kombu-bench-") as tmp:
        results = measure(make_peers(args, tmp), args)
    return report(args, results)


def _ratio(mine: float | None, theirs: float | None) -> float | None:
    return mine / theirs if mine and theirs else None


def report(args: argparse.Namespace, results: dict[str, Result]) -> dict[str, Any]:
    stat = args.stat
    base = results.get("gorelay+sqlite")
    lines = [f"kombu bench: {args.messages} msgs x ~{args.body_bytes} B, prefetch "
             f"{args.prefetch}, {stat} of {args.repeat} round(s), warm-up {args.warmup}", "",
             "| transport | publish msg/s | consume msg/s | gorelay/peer publish "
             "| gorelay/peer consume | correct |", "|---|---:|---:|---:|---:|---|"]
    ratios: dict[str, dict[str, float | None]] = {}
    for name, r in results.items():
        if r.skipped:
            lines.append(f"| {name} | skipped | skipped | | | {r.skipped} |")
            continue
        rates = {p: r.rate(p, stat) for p in PHASES}
        mine = {p: base.rate(p, stat) if base else None for p in PHASES}
        ratio = ratios[name] = {p: _ratio(mine[p], rates[p]) for p in PHASES}
        cells = [f"{rates[p] or 0:,.0f}" for p in PHASES]
        cells += [f"{ratio[p]:.2f}x" if ratio[p] else "-" for p in PHASES]
        cells.append("yes" if not r.errors else "NO: " + "; ".join(r.errors))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "| target (gorelay+sqlite / peer) | publish | consume |", "|---|---|---|"]
    targets: dict[str, dict[str, Any]] = {}
    for peer, want in TARGETS.items():
        targets[peer] = {"target": want}
        cells = []
        for p in PHASES:
            got = ratios.get(peer, {}).get(p)
            met = None if got is None else got >= want
            targets[peer][p] = {"ratio": got, "met": met}
            cells.append("not measured" if got is None
                         else f"{'met' if met else 'NOT met'} ({got:.2f}x)")
        lines.append(f"| >= {want:g}x {peer} | {cells[0]} | {cells[1]} |")
    paired = paired_ratios(results)
    if paired:
        lines += ["", "Same-round ratios (gorelay's round k / the peer's round k, run next to "
                  "each other), median [min-max]; the machine's speed drifts less between "
                  "them than across a whole run:", "",
                  "| peer | publish | consume |", "|---|---|---|"]
        for peer, by_phase in paired.items():
            lines.append(f"| {peer} | " + " | ".join(
                f"{statistics.median(v):.2f}x [{min(v):.2f}-{max(v):.2f}]"
                for v in by_phase.values()) + " |")
    print("\n".join(lines))
    return {"args": vars(args), "environment": environment(), "stat": stat,
            "paired_ratios": paired,
            "results": {n: asdict(r) | {f"rate_{p}": r.rate(p, stat) for p in PHASES}
                        for n, r in results.items()},
            "ratios": ratios, "targets": targets, "table": "\n".join(lines)}


def paired_ratios(results: dict[str, Result]) -> dict[str, dict[str, list[float]]]:
    """Per peer and phase: gorelay's rate / the peer's in each round both completed."""
    base = results.get("gorelay+sqlite")
    if base is None or base.skipped:
        return {}
    paired: dict[str, dict[str, list[float]]] = {}
    for name, r in results.items():
        if r is base or r.skipped or len(r.publish) != len(base.publish):
            continue  # (a failed round leaves nothing to pair it with)
        by_phase = {p: [a / b for a, b in zip(getattr(base, p), getattr(r, p), strict=True)
                        if b] for p in PHASES}
        if all(by_phase.values()):
            paired[name] = by_phase
    return paired


def environment() -> dict[str, Any]:
    """Versions, and the commit of the package that ran (and whether it was modified)."""
    env: dict[str, Any] = {"python": platform.python_version(), "kombu": kombu.__version__,
                           "cpus": os.cpu_count(), "platform": platform.platform()}
    git = ["git", "-C", os.path.dirname(os.path.dirname(RESULTS))]
    try:
        env["git_head"] = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True,
                                         text=True, timeout=10).stdout.strip()
        env["package_modified"] = bool(subprocess.run(
            [*git, "status", "--porcelain", "gorelay_kombu"], capture_output=True, text=True,
            timeout=10).stdout.strip())
    except (OSError, subprocess.SubprocessError):
        pass
    return env


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--messages", type=int, default=5000, help="messages per round")
    add("--body-bytes", type=int, default=200, help="JSON body size")
    add("--repeat", type=int, default=3, help="measured rounds per transport")
    add("--stat", choices=("best", "median"), default="best", help="how rounds combine")
    add("--warmup", type=int, default=500, help="warm-up messages (0: none)")
    add("--prefetch", type=int, default=100, help="consumer prefetch_count")
    add("--redis-db", type=int, default=14, help="redis db number (it is flushed!)")
    add("--idle-timeout", type=float, default=10.0, help="give up a round after this (s)")
    add("--transports", default="", help="comma list: gorelay,sqla+sqlite,redis,amqp,memory")
    add("--extra", action="append", default=[], metavar="NAME=URL",
        help="also run this transport ({tmp} in URL: the run's temp directory)")
    add("--output", default=os.path.join(RESULTS, "kombu_bench.json"))
    args = parser.parse_args(argv)
    data = run(args)
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    with open(args.output, "w") as fh:
        json.dump(data, fh, indent=2, default=str)
    print(f"\nJSON: {args.output}")
    return 1 if any(r["errors"] for r in data["results"].values()) else 0


if __name__ == "__main__":
    sys.exit(main())
