"""Kombu-level publish/consume throughput of gorelay+postgresql against its peers.

Same harness as ``kombu_bench.py`` (its ``Bench`` class: one ``Connection``
per transport, ``Producer.publish`` per message, a ``Consumer`` with
``prefetch_count`` acking each message through ``drain_events``; every id
consumed exactly once, nothing left), side by side in one run:

* ``gorelay+postgresql``: a fresh schema ``gorelay_bench_<tag>``, dropped after,
  with the default ``synchronous_commit=on`` (a publish returns after its WAL
  flush); ``gorelay+postgresql sc=off`` is the same with
  ``synchronous_commit=off`` (its own schema), unless ``--no-sync-off``.
* ``sqla+postgresql``: kombu's SQLAlchemy transport on the same database, with
  its own fresh tables (``kombu_*_bench_<tag>``), dropped after.
* ``redis``: ``redis://127.0.0.1:6379/<--redis-db>`` (flushed before and after).

Targets (gorelay+postgresql / peer, publish and consume): >= 10x
sqla+postgresql, >= 1x redis; checked for both gorelay rows.

Run::

    python bench/postgres_bench.py                  # 5000 msgs x 200 B, best of 3
    python bench/postgres_bench.py --messages 1000 --repeat 1

Prints a Markdown table; writes ``bench/results/postgres_bench.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import uuid
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import kombu_bench as kb  # noqa: E402

PG_URL = os.environ.get("GORELAY_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
TARGETS = {"sqla+postgresql": 10.0, "redis": 1.0}
BASE = "gorelay+postgresql"
SYNC_OFF = f"{BASE} sc=off"


def peers(args: argparse.Namespace, tag: str) -> list[kb.Peer]:
    host_port = ("127.0.0.1", 5432)
    gorelay = [kb.Peer(BASE, f"gorelay+{PG_URL}?schema=gorelay_bench_{tag}", server=host_port)]
    if args.sync_off:
        gorelay.append(kb.Peer(SYNC_OFF, f"gorelay+{PG_URL}?schema=gorelay_bench_{tag}_off"
                               "&synchronous_commit=off", server=host_port))
    return gorelay + [
        kb.Peer("sqla+postgresql", f"sqla+{PG_URL.replace('postgresql://', 'postgresql+psycopg://')}",
                {"queue_tablename": f"kombu_queue_bench_{tag}",
                 "message_tablename": f"kombu_message_bench_{tag}"}, server=host_port),
        kb.Peer("redis", f"redis://127.0.0.1:6379/{args.redis_db}", server=("127.0.0.1", 6379),
                redis_db=args.redis_db),
    ]


def drop_leftovers(tag: str) -> None:
    import psycopg

    with psycopg.connect(PG_URL, autocommit=True) as conn:
        for schema in (f"gorelay_bench_{tag}", f"gorelay_bench_{tag}_off"):
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        for table in (f"kombu_message_bench_{tag}", f"kombu_queue_bench_{tag}"):
            conn.execute(f'DROP TABLE IF EXISTS "{table}" CASCADE')
        conn.execute(f'DROP SEQUENCE IF EXISTS "{f"message_id_sequence_bench_{tag}"}"')


def run(args: argparse.Namespace) -> dict[str, Any]:
    tag = uuid.uuid4().hex[:8]
    try:
        results = kb.measure(peers(args, tag), args)
    finally:
        drop_leftovers(tag)
    return report(args, results)


def report(args: argparse.Namespace, results: dict[str, kb.Result]) -> dict[str, Any]:
    stat, base = args.stat, results.get(BASE)
    lines = [f"postgres bench: {args.messages} msgs x ~{args.body_bytes} B, prefetch "
             f"{args.prefetch}, {stat} of {args.repeat} round(s), warm-up {args.warmup}", "",
             "| transport | publish msg/s | consume msg/s | gorelay/peer publish "
             "| gorelay/peer consume | correct |", "|---|---:|---:|---:|---:|---|"]
    ratios: dict[str, dict[str, float | None]] = {}
    for name, r in results.items():
        if r.skipped:
            lines.append(f"| {name} | skipped | skipped | | | {r.skipped} |")
            continue
        rates = {p: r.rate(p, stat) for p in kb.PHASES}
        ratio = ratios[name] = {
            p: kb._ratio(base.rate(p, stat) if base else None, rates[p]) for p in kb.PHASES}
        cells = [f"{rates[p] or 0:,.0f}" for p in kb.PHASES]
        cells += [f"{ratio[p]:.2f}x" if ratio[p] else "-" for p in kb.PHASES]
        cells.append("yes" if not r.errors else "NO: " + "; ".join(r.errors))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "| target (gorelay / peer) | gorelay | publish | consume |",
              "|---|---|---|---|"]
    targets: dict[str, Any] = {}
    for mine_name in (BASE, SYNC_OFF):
        mine = results.get(mine_name)
        if mine is None or mine.skipped:
            continue
        for peer, want in TARGETS.items():
            theirs = results.get(peer)
            cells = []
            entry = targets.setdefault(mine_name, {})[peer] = {"target": want}
            for p in kb.PHASES:
                got = kb._ratio(mine.rate(p, stat),
                                theirs.rate(p, stat) if theirs and not theirs.skipped else None)
                met = None if got is None else got >= want
                entry[p] = {"ratio": got, "met": met}
                cells.append("not measured" if got is None
                             else f"{'met' if met else 'NOT met'} ({got:.2f}x)")
            lines.append(f"| >= {want:g}x {peer} | {mine_name} | {cells[0]} | {cells[1]} |")
    print("\n".join(lines))
    return {"args": vars(args), "environment": kb.environment(), "stat": stat,
            "results": {n: vars(r) for n, r in results.items()}, "ratios": ratios,
            "targets": targets, "table": "\n".join(lines)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--messages", type=int, default=5000, help="messages per round")
    add("--body-bytes", type=int, default=200, help="JSON body size")
    add("--repeat", type=int, default=3, help="measured rounds per transport")
    add("--stat", choices=("best", "median"), default="best", help="how rounds combine")
    add("--warmup", type=int, default=500, help="warm-up messages (0: none)")
    add("--prefetch", type=int, default=100, help="consumer prefetch_count")
    add("--redis-db", type=int, default=10,
        help="redis db number (it is flushed!); 11-14 are the other benches'")
    add("--no-sync-off", dest="sync_off", action="store_false",
        help="skip the synchronous_commit=off row")
    add("--idle-timeout", type=float, default=30.0, help="give up a round after this (s)")
    add("--output", default=os.path.join(kb.RESULTS, "postgres_bench.json"))
    args = parser.parse_args(argv)
    data = run(args)
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    with open(args.output, "w") as fh:
        json.dump(data, fh, indent=2, default=str)
    print(f"\nJSON: {args.output}")
    return 1 if any(r["errors"] for r in data["results"].values()) else 0


if __name__ == "__main__":
    sys.exit(main())
