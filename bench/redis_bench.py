"""Kombu-level publish/consume throughput: gorelay+redis against kombu's own redis://.

Both on the same Redis server, side by side in one run, interleaved rounds
(reuses :mod:`kombu_bench`'s Bench): gorelay+redis on db ``--gorelay-db``
(default 11) under a fresh key prefix deleted afterwards, kombu's redis://
on db ``--redis-db`` (default 12, flushed before and after).  ``--messages``
JSON bodies of ~``--body-bytes`` bytes published one by one, then consumed
with ``prefetch_count`` 100 and an ack each.  Every round must consume each
id exactly once and leave nothing.  Target (issue 4): gorelay+redis at least
2x redis:// for publish and for consume.

Run::

    python bench/redis_bench.py                   # 5000 messages, best of 3
    python bench/redis_bench.py --messages 500 --repeat 1

Prints a Markdown table; writes ``bench/results/redis_bench.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from kombu_bench import PHASES, RESULTS, Peer, environment, measure  # noqa: E402

TARGET = 2.0


def delete_prefix(host: str, port: int, db: int, prefix: str) -> int:
    import redis

    client = redis.Redis(host=host, port=port, db=db)
    keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
    for i in range(0, len(keys), 500):
        client.delete(*keys[i:i + 500])
    return len(keys)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--messages", type=int, default=5000)
    add("--body-bytes", type=int, default=200)
    add("--repeat", type=int, default=3)
    add("--warmup", type=int, default=500)
    add("--prefetch", type=int, default=100)
    add("--host", default="127.0.0.1")
    add("--port", type=int, default=6379)
    add("--gorelay-db", type=int, default=11)
    add("--redis-db", type=int, default=12, help="kombu redis:// db (it is flushed!)")
    add("--idle-timeout", type=float, default=10.0)
    add("--output", default=os.path.join(RESULTS, "redis_bench.json"))
    args = parser.parse_args(argv)

    prefix = f"gorelay-bench-{uuid.uuid4().hex[:8]}:"
    server = f"{args.host}:{args.port}"
    peers = [
        Peer("gorelay+redis", f"gorelay+redis://{server}/{args.gorelay_db}?key_prefix={prefix}"),
        Peer("redis", f"redis://{server}/{args.redis_db}", redis_db=args.redis_db),
    ]
    try:
        results = measure(peers, args)
    finally:
        left = delete_prefix(args.host, args.port, args.gorelay_db, prefix)
    mine, theirs = results["gorelay+redis"], results["redis"]
    ratios = {p: (mine.rate(p, "best") or 0) / (theirs.rate(p, "best") or 1) for p in PHASES}
    lines = [f"redis bench: {args.messages} msgs x ~{args.body_bytes} B, prefetch "
             f"{args.prefetch}, best of {args.repeat}, same server {server}", "",
             "| transport | publish msg/s | consume msg/s | correct |", "|---|---:|---:|---|"]
    for r in results.values():
        lines.append(f"| {r.name} | {r.rate('publish', 'best') or 0:,.0f} | "
                     f"{r.rate('consume', 'best') or 0:,.0f} | "
                     f"{'yes' if not r.errors else 'NO: ' + '; '.join(r.errors)} |")
    lines += ["", f"| gorelay+redis / redis:// (target >= {TARGET:g}x) | publish | consume |",
              "|---|---|---|",
              "| ratio | " + " | ".join(
                  f"{ratios[p]:.2f}x {'met' if ratios[p] >= TARGET else 'NOT met'}"
                  for p in PHASES) + " |",
              "", f"({left} gorelay keys deleted after the run)"]
    print("\n".join(lines))
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    with open(args.output, "w") as fh:
        json.dump({"args": vars(args), "environment": environment(), "ratios": ratios,
                   "results": {n: vars(r) for n, r in results.items()},
                   "table": "\n".join(lines)}, fh, indent=2, default=str)
    return 1 if any(r.errors for r in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
