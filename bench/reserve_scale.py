"""Reserve cost at 1,000 vs 1,000,000 queued messages (SQLite store).

    python bench/reserve_scale.py [--big 1000000] [--small 1000]

Fills two fresh SQLite stores (mixed lanes, plus scheduled messages that
must be skipped), then times batches of ``reserve(limit=100)`` + ``ack`` on
each.  The claim is O(log n): the ratio big/small should stay near 1, not
near big/small.  Prints a Markdown table; a ratio, not a threshold.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

from gorelay_kombu.priority import LANES
from gorelay_kombu.storage.base import NewMessage
from gorelay_kombu.storage.sqlite import SQLiteStore

PAYLOAD = b'{"body": "' + b"x" * 180 + b'"}'


def fill(store: SQLiteStore, n: int) -> None:
    later = time.time() + 3600
    batch = []
    for i in range(n):
        visible = later if i % 10 == 0 else 0.0  # 10% scheduled an hour ahead
        batch.append(NewMessage("jobs", PAYLOAD, LANES[i % 3], visible))
        if len(batch) == 10_000:
            store.put_many(batch)
            batch = []
    if batch:
        store.put_many(batch)


def time_reserves(store: SQLiteStore, rounds: int) -> float:
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(rounds):
            got = store.reserve(["jobs"], 100, "bench", 30)
            store.ack([m.id for m in got])
        best = min(best, (time.perf_counter() - start) / rounds)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=1_000)
    parser.add_argument("--big", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, n in (("small", args.small), ("big", args.big)):
            store = SQLiteStore(os.path.join(tmp, f"{label}.db"))
            fill(store, n)
            results[label] = (n, time_reserves(store, args.rounds))
            store.close()
    (n_small, t_small), (n_big, t_big) = results["small"], results["big"]
    print("| queued | reserve(100)+ack, ms |")
    print("| ---: | ---: |")
    print(f"| {n_small:,} | {t_small * 1e3:.2f} |")
    print(f"| {n_big:,} | {t_big * 1e3:.2f} |")
    print(f"\nratio big/small: {t_big / t_small:.2f} (queue {n_big // n_small}x larger)")


if __name__ == "__main__":
    main()
