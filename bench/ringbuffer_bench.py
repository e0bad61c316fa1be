"""LaneRing against the obvious alternatives, on the transport's workload.

Structures (each behind the same ``push(lane, item)`` / ``pop()`` /
``len()`` / ``extend(pairs)`` interface the transport uses, so every one
pays one Python method call per push and per pop):

* ``LaneRing``: gorelay_kombu.ringbuffer (the one the transport uses);
* ``3 deques``: one ``collections.deque`` per lane, bounded like LaneRing,
  served high -> normal -> low;
* ``PriorityQueue``: one ``queue.PriorityQueue`` of ``(lane, seq, item)``;
* ``heapq``: ``heapq`` on a list of ``(lane, seq, item)``;
* ``cand:*``: the candidates of ``bench/ringbuffer_candidates.py``
  (``--no-candidates`` leaves them out).

PriorityQueue and heapq are not bounded per lane (that only favours them).

Workloads, over the same pre-generated batches (``--batches`` batches of
``--min-batch``..``--batch`` items, lanes drawn 20% high / 60% normal / 20%
low, each batch sorted by lane then id as the store returns it):

* ``drain``: push a batch, pop one at a time until empty, next batch
  (the transport's refill-when-empty pattern), per-lane capacity 128;
* ``steady``: pop one item per step, push the next batch whenever fewer
  than capacity/2 items are held, then drain; per-lane capacity 256;
* ``push`` is per item (``push(lane, item)`` as the transport does) or,
  with ``+extend`` rows, one ``extend(batch)`` per batch.

Timing is timeit-style: best of ``--repeat`` runs, reported as ns per item
(one push plus one pop) and relative to LaneRing.  Before timing, every
structure's pop order is checked against the 3-deques reference.

Run::

    python bench/ringbuffer_bench.py                  # defaults
    python bench/ringbuffer_bench.py --batches 50 --repeat 3

Writes ``bench/results/ringbuffer_bench.json``.
"""

from __future__ import annotations

import argparse
import heapq
import json
import os
import platform
import random
import sys
import time
import timeit
from collections import deque
from collections.abc import Callable, Iterable
from functools import partial
from queue import Empty, PriorityQueue
from typing import Any

from gorelay_kombu.ringbuffer import LaneRing

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
_discard: Callable[[Any], None] = deque(maxlen=0).append  # C-level no-op sink for timing
Batch = list[tuple[int, int]]


class DequeLanes:
    """Three bounded deques, high first."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.lanes: tuple[deque[int], deque[int], deque[int]] = (deque(), deque(), deque())

    def __len__(self) -> int:
        high, normal, low = self.lanes
        return len(high) + len(normal) + len(low)

    def push(self, lane: int, item: int) -> None:
        d = self.lanes[lane]
        if len(d) >= self.capacity:
            raise OverflowError(lane)
        d.append(item)

    def extend(self, items: Iterable[tuple[int, int]]) -> None:
        for lane, item in items:
            self.push(lane, item)

    def pop(self) -> int | None:
        high, normal, low = self.lanes
        if high:
            return high.popleft()
        if normal:
            return normal.popleft()
        if low:
            return low.popleft()
        return None


class PQLanes:
    """queue.PriorityQueue of (lane, seq, item); locks on every call."""

    def __init__(self, capacity: int) -> None:
        self.q: PriorityQueue[tuple[int, int, int]] = PriorityQueue()
        self.seq = 0

    def __len__(self) -> int:
        return self.q.qsize()

    def push(self, lane: int, item: int) -> None:
        self.seq += 1
        self.q.put_nowait((lane, self.seq, item))

    def extend(self, items: Iterable[tuple[int, int]]) -> None:
        for lane, item in items:
            self.push(lane, item)

    def pop(self) -> int | None:
        try:
            return self.q.get_nowait()[2]
        except Empty:
            return None


class HeapLanes:
    """heapq on a list of (lane, seq, item)."""

    def __init__(self, capacity: int) -> None:
        self.heap: list[tuple[int, int, int]] = []
        self.seq = 0

    def __len__(self) -> int:
        return len(self.heap)

    def push(self, lane: int, item: int) -> None:
        self.seq += 1
        heapq.heappush(self.heap, (lane, self.seq, item))

    def extend(self, items: Iterable[tuple[int, int]]) -> None:
        for lane, item in items:
            self.push(lane, item)

    def pop(self) -> int | None:
        return heapq.heappop(self.heap)[2] if self.heap else None


def structures(with_candidates: bool) -> dict[str, Callable[[int], Any]]:
    found: dict[str, Callable[[int], Any]] = {
        "LaneRing": LaneRing, "3 deques": DequeLanes,
        "PriorityQueue": PQLanes, "heapq": HeapLanes,
    }
    if with_candidates:
        import ringbuffer_candidates as cand

        found["cand:IndexRing"] = cand.IndexRing
    return found


def make_batches(count: int, low: int, high: int, seed: int) -> list[Batch]:
    rng = random.Random(seed)
    ident = 0
    batches = []
    for _ in range(count):
        batch = []
        for _ in range(rng.randint(low, high)):
            r = rng.random()
            batch.append((0 if r < 0.2 else 1 if r < 0.8 else 2, ident))
            ident += 1
        batch.sort()  # by lane, then id: the store's order
        batches.append(batch)
    return batches


def drain_run(make: Callable[[int], Any], batches: list[Batch], use_extend: bool,
              out: list[int] | None = None) -> None:
    """Push a batch, pop until empty; ``out`` collects the order (checking only)."""
    ring = make(128)
    push, pop, extend = ring.push, ring.pop, ring.extend
    sink = out.append if out is not None else _discard
    for batch in batches:
        if use_extend:
            extend(batch)
        else:
            for lane, item in batch:
                push(lane, item)
        while (item := pop()) is not None:
            sink(item)


def steady_run(make: Callable[[int], Any], batches: list[Batch], use_extend: bool,
               out: list[int] | None = None) -> None:
    """Pop one per step; push the next batch whenever under half full."""
    capacity = 256
    ring = make(capacity)
    push, pop, extend = ring.push, ring.pop, ring.extend
    sink = out.append if out is not None else _discard
    half = capacity // 2
    for batch in batches:
        while len(ring) >= half:
            sink(pop())
        if use_extend:
            extend(batch)
        else:
            for lane, item in batch:
                push(lane, item)
        sink(pop())
    while (item := pop()) is not None:
        sink(item)


WORKLOADS = {"drain": drain_run, "steady": steady_run}


def isolated(make: Callable[[int], Any], cycles: int, repeat: int) -> list[float]:
    """Best ns per push(1, i), per pop() from lane 1, per pop() when empty."""
    best = [float("inf")] * 3
    clock, n = time.perf_counter, 128
    for _ in range(repeat):
        ring = make(n)
        push, pop = ring.push, ring.pop
        spent = [0.0, 0.0, 0.0]
        for _ in range(cycles):
            t0 = clock()
            for i in range(n):
                push(1, i)
            t1 = clock()
            for _ in range(n):
                pop()
            t2 = clock()
            for _ in range(n):
                pop()
            t3 = clock()
            spent[0] += t1 - t0
            spent[1] += t2 - t1
            spent[2] += t3 - t2
        best = [min(b, t / (cycles * n) * 1e9) for b, t in zip(best, spent, strict=True)]
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=2000, help="batches per run")
    parser.add_argument("--batch", type=int, default=100, help="largest batch")
    parser.add_argument("--min-batch", type=int, default=1, help="smallest batch")
    parser.add_argument("--repeat", type=int, default=7, help="runs; the best counts")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--no-candidates", action="store_true")
    parser.add_argument("--output", default=os.path.join(RESULTS, "ringbuffer_bench.json"))
    args = parser.parse_args(argv)

    batches = make_batches(args.batches, args.min_batch, args.batch, args.seed)
    items = sum(map(len, batches))
    found = structures(not args.no_candidates)
    cases = [(name, make, ext) for name, make in found.items() for ext in (False, True)
             if ext is False or name in ("LaneRing", "3 deques") or name.startswith("cand:")]

    # correctness: same pop order as the reference, for every workload and push style
    errors = []
    for wname, run in WORKLOADS.items():
        reference: list[int] = []
        run(DequeLanes, batches, False, reference)
        assert sorted(reference) == list(range(items))
        for name, make, ext in cases:
            got: list[int] = []
            run(make, batches, ext, got)
            if got != reference:
                errors.append(f"{wname}: {name}{'+extend' if ext else ''} order differs")

    results: dict[str, dict[str, float]] = {}
    for wname, run in WORKLOADS.items():
        times: dict[str, list[float]] = {}
        for _ in range(args.repeat):  # interleave structures: noise hits all alike
            for name, make, ext in cases:
                label = name + ("+extend" if ext else "")
                t = timeit.timeit(partial(run, make, batches, ext), number=1)
                times.setdefault(label, []).append(t)
        results[wname] = {label: min(ts) / items * 1e9 for label, ts in times.items()}

    lines = [f"ringbuffer bench: {args.batches} batches of {args.min_batch}..{args.batch} "
             f"items ({items} items), lanes 20/60/20, best of {args.repeat}; "
             "ns per item (push + pop)", "",
             "| structure | drain ns | vs LaneRing | steady ns | vs LaneRing |",
             "|---|---:|---:|---:|---:|"]
    for label in results["drain"]:
        cells = []
        for wname in WORKLOADS:
            ns, base = results[wname][label], results[wname]["LaneRing"]
            rel = f"{base / ns:.2f}x faster" if ns < base else f"{ns / base:.2f}x slower"
            cells += [f"{ns:.0f}", "1.00x" if rel.startswith("1.00x") else rel]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    ops = {name: isolated(make, max(args.batches // 10, 10), args.repeat)
           for name, make in found.items()}
    lines += ["", "isolated operations (ns each, loop overhead included):", "",
              "| structure | push(1, x) | pop() lane 1 | pop() empty |", "|---|---:|---:|---:|"]
    lines += [f"| {name} | {a:.0f} | {b:.0f} | {c:.0f} |" for name, (a, b, c) in ops.items()]
    lines.append("")
    lines.append("order check: " + ("all structures agree" if not errors else "; ".join(errors)))
    print("\n".join(lines))
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    with open(args.output, "w") as fh:
        json.dump({"args": vars(args), "items": items, "ns_per_item": results, "isolated_ns": ops,
                   "order_errors": errors, "python": platform.python_version(),
                   "table": "\n".join(lines)}, fh, indent=2)
    print(f"\nJSON: {args.output}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
