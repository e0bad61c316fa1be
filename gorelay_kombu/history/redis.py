"""Task history on the Redis store: hashes, timelines and sorted-set indexes.

Each task is a hash, its timeline a list, and five sorted sets scored by
its ``seq`` (the order the history first recorded it) index it (all tasks,
per state, queue, name and root id), so a listing with at most one filter is
a ``ZREVRANGE`` page and ``counts`` is one ``ZCARD`` per state; one more
sorted set per state, scored by ``updated_at``, serves ``prune``.  A listing
with several filters, or a search, walks the smallest matching index in
chunks (one read-only script per chunk, so Redis is never blocked for long)
until the page is full; only then does its cost grow with the index walked.
Throughput and the runtime histogram are counters in hashes, bumped by the
same script that records the event.

One ``RECORD`` script applies a whole batch atomically; the keys and every
script are described in :mod:`.redis_lua`.  All keys share the hash tag
``{%h}`` (one Redis Cluster slot): the history is one logical unit and its
writes touch several of its keys at once.  The per-minute throughput counters
are kept until the keys are deleted (two hash fields and one zset entry per
minute with a finished task).
"""

from __future__ import annotations

import json
from bisect import bisect_left
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..storage.redis_lua import Script
from . import redis_lua as lua
from .base import (
    EVENT_STATES,
    FINAL_STATES,
    RUNTIME_BUCKETS,
    STATES,
    TASK_FIELDS,
    EventRecord,
    History,
    Page,
    TaskEvent,
    TaskRecord,
    WorkerBeat,
    WorkerRecord,
)

if TYPE_CHECKING:
    from ..storage.redis import RedisStore

_INT_FIELDS = frozenset({"lane", "attempt"})
_FLOAT_FIELDS = frozenset({"eta", "runtime", "next_attempt_at"})
_FIELDS = frozenset(TASK_FIELDS)
_STAMPS = {"sent": "sent_at", "received": "received_at", "started": "started_at"}
_TIMES = ("sent_at", "received_at", "started_at", "finished_at")
_THROUGHPUT = {"SUCCESS": "s", "FAILURE": "f", "DEAD": "f"}
#: filter name -> index key part (see .redis_lua)
_DIMS = (("state", "s:"), ("queue", "q:"), ("name", "n:"), ("root_id", "r:"))
#: ids a LIST chunk walks at first (doubling up to _MAX_CHUNK)
_CHUNK = 200
_MAX_CHUNK = 5000


def _num(x: float) -> str:
    return repr(float(x))


def _encode(name: str, value: Any) -> str:
    if name in _INT_FIELDS:
        return str(int(value))
    if name in _FLOAT_FIELDS:
        return _num(value)
    return str(value)


def _decode(name: str, text: str) -> Any:
    if name in _INT_FIELDS:
        return int(text)
    if name in _FLOAT_FIELDS:
        return float(text)
    return text


def _opt(value: str | None) -> str:
    """A LIST filter argument: '' when not given, else '=' and the value."""
    return "" if value is None else "=" + value


RECORD, DELETE, PRUNE, LIST, HEARTBEAT, FORGET = (
    Script(s) for s in (lua.RECORD, lua.DELETE, lua.PRUNE, lua.LIST, lua.HEARTBEAT, lua.FORGET)
)


class RedisHistory(History):
    """The task history of one :class:`~gorelay_kombu.storage.redis.RedisStore`.

    It shares the store's connection pool; any number of these objects, in
    any process, see one history.
    """

    def __init__(self, store: RedisStore) -> None:
        self._store = store
        self._stem = f"{store.key_prefix}{{%h}}:"
        self._all = self._stem + "all"

    def _key(self, *parts: str) -> str:
        return self._stem + "".join(parts)

    def _eval(self, script: Any, args: Sequence[Any], key: str | None = None) -> Any:
        return self._store._eval(script, [key or self._all], [self._stem, *args])

    def _pipe(self, calls: Sequence[tuple[Any, ...]]) -> list[Any]:
        return self._store._batch(calls) if calls else []

    # -- writing ----------------------------------------------------------------
    def record(self, events: Sequence[TaskEvent]) -> None:
        if not events:
            return
        args: list[Any] = []
        # stable: each task's events keep their order; new tasks get seqs in id order
        for e in sorted(events, key=lambda e: e.task_id):
            state = EVENT_STATES.get(e.event)
            # None never overwrites; keys outside TASK_FIELDS are not task fields
            # (they could clash with the hash's own state / updated_at / @... entries)
            fields = [(k, _encode(k, v)) for k, v in e.fields.items()
                      if v is not None and k in _FIELDS]
            runtime = e.fields.get("runtime")
            args += [
                e.task_id, _num(e.at), state or "", _STAMPS.get(e.event, ""),
                "1" if state in FINAL_STATES else "", _THROUGHPUT.get(state or "", ""),
                str(int(e.at // 60)),
                "" if runtime is None else str(bisect_left(RUNTIME_BUCKETS, float(runtime))),
                "" if runtime is None else _num(runtime),
                json.dumps([e.at, e.event, e.worker, e.info]), len(fields),
            ]
            for name, value in fields:
                args += [name, value]
        self._eval(RECORD, args)

    def heartbeat(self, beats: Sequence[WorkerBeat]) -> None:
        if not beats:
            return
        args: list[Any] = []
        for b in beats:
            args += [
                b.hostname, _num(b.at), "" if b.pid is None else str(int(b.pid)),
                "" if b.pool is None else b.pool,
                "" if b.concurrency is None else str(int(b.concurrency)),
                "" if b.queues is None else json.dumps(list(b.queues)),
                "" if b.started_at is None else _num(b.started_at),
                int(b.done), int(b.failed),
                "" if b.stopped is None else "1" if b.stopped else "0",
            ]
        self._eval(HEARTBEAT, args)

    def delete_tasks(self, task_ids: Sequence[str]) -> int:
        if not task_ids:
            return 0
        return int(self._eval(DELETE, list(dict.fromkeys(task_ids))))

    def prune(self, older_than: dict[str, float], limit: int = 1000) -> int:
        if not older_than or limit <= 0:
            return 0
        args: list[Any] = [int(limit)]
        for state, cutoff in older_than.items():
            args += [state, "(" + _num(cutoff)]
        return int(self._eval(PRUNE, args))

    def forget_workers(self, seen_before: float) -> int:
        return int(self._eval(FORGET, ["(" + _num(seen_before)]))

    # -- reading ----------------------------------------------------------------
    def task(self, task_id: str) -> TaskRecord | None:
        [raw] = self._pipe([("HGETALL", self._key("t:", task_id))])
        return _record(task_id, raw)

    def events(self, task_id: str) -> list[EventRecord]:
        [lines] = self._pipe([("LRANGE", self._key("e:", task_id), 0, -1)])
        rows = []
        for line in lines:
            at, event, worker, info = json.loads(line)
            rows.append(EventRecord(task_id, event, float(at), worker, info))
        rows.sort(key=lambda r: r.at)  # stable: arrival order among equal times
        return rows

    def tasks(
        self,
        *,
        state: str | None = None,
        queue: str | None = None,
        name: str | None = None,
        root_id: str | None = None,
        search: str | None = None,
        newest_first: bool = True,
        offset: int = 0,
        limit: int = 50,
    ) -> Page:
        offset, limit = max(int(offset), 0), max(int(limit), 0)
        values = {"state": state, "queue": queue, "name": name, "root_id": root_id}
        given = [self._key(part, v) for f, part in _DIMS if (v := values[f]) is not None]
        index = given[0] if given else self._all
        if len(given) > 1:  # walk the smallest index, check the other filters on the way
            sizes = self._pipe([("ZCARD", key) for key in given])
            index = min(zip(sizes, given, strict=True))[1]
        if search or len(given) > 1:
            ids = self._walk(index, newest_first, offset + limit + 1,
                             [_opt(values[f]) for f, _ in _DIMS] + [_opt(search or None)])
            ids = ids[offset:]
        else:
            command = "ZREVRANGE" if newest_first else "ZRANGE"
            [ids] = self._pipe([(command, index, offset, offset + limit)])
        ids = ids[:limit + 1]
        has_more = len(ids) > limit
        page = [i.decode() for i in ids[:limit]]
        raws = self._pipe([("HGETALL", self._key("t:", i)) for i in page])
        records = [_record(i, raw) for i, raw in zip(page, raws, strict=True)]
        return Page([r for r in records if r is not None], has_more)

    def _walk(self, index: str, newest_first: bool, need: int, filters: list[str]) -> list[Any]:
        """The first ``need`` ids of ``index`` (in listing order) matching ``filters``."""
        found: list[Any] = []
        start, chunk = 0, _CHUNK
        while len(found) < need:
            reply = self._eval(LIST, [start, chunk, "1" if newest_first else "", *filters],
                               key=index)
            found += reply[:-1]
            if int(reply[-1]) < chunk:
                break
            start += chunk
            chunk = min(chunk * 2, _MAX_CHUNK)
        return found

    def counts(self) -> dict[str, int]:
        sizes = self._pipe([("ZCARD", self._key("s:", s)) for s in STATES])
        return {s: int(n) for s, n in zip(STATES, sizes, strict=True)}

    def names(self) -> list[str]:
        [raw] = self._pipe([("ZRANGE", self._key("names"), 0, -1)])
        return sorted(n.decode() for n in raw)

    def throughput(self, since: float) -> list[tuple[int, int, int]]:
        [minutes] = self._pipe([("ZRANGEBYSCORE", self._key("tpm"), int(since // 60), "+inf")])
        if not minutes:
            return []
        fields = [f"{kind}{m.decode()}" for m in minutes for kind in ("s", "f")]
        [counts] = self._pipe([("HMGET", self._key("tp"), *fields)])
        rows = []
        for j, m in enumerate(minutes):
            succeeded, failed = (int(c or 0) for c in counts[2 * j:2 * j + 2])
            if succeeded or failed:
                rows.append((int(m), succeeded, failed))
        return rows

    def runtime_histogram(self) -> tuple[list[tuple[float, int]], int, float]:
        [raw] = self._pipe([("HGETALL", self._key("rt"))])
        h = {k.decode(): v for k, v in raw.items()}
        buckets, total = [], 0
        for i, le in enumerate((*RUNTIME_BUCKETS, float("inf"))):
            total += int(h.get(f"b{i}", 0))
            buckets.append((le, total))
        return buckets, int(h.get("count", 0)), float(h.get("sum", 0.0))

    def workers(self) -> list[WorkerRecord]:
        [hosts] = self._pipe([("ZRANGE", self._key("workers"), 0, -1)])
        names = sorted(h.decode() for h in hosts)
        raws = self._pipe([("HGETALL", self._key("w:", h)) for h in names])
        rows = []
        for host, raw in zip(names, raws, strict=True):
            if not raw:
                continue  # forgotten in between
            w = {k.decode(): v.decode() for k, v in raw.items()}
            rows.append(WorkerRecord(
                hostname=host,
                pid=int(w["pid"]) if "pid" in w else None,
                pool=w.get("pool"),
                concurrency=int(w["concurrency"]) if "concurrency" in w else None,
                queues=tuple(json.loads(w["queues"])) if "queues" in w else (),
                started_at=float(w["started_at"]) if "started_at" in w else None,
                last_seen=float(w["last_seen"]),
                done=int(w.get("done", 0)),
                failed=int(w.get("failed", 0)),
                stopped=w.get("stopped") == "1",
            ))
        return rows


def _record(task_id: str, raw: dict[bytes, bytes]) -> TaskRecord | None:
    if not raw:
        return None
    h = {k.decode(): v.decode() for k, v in raw.items() if not k.startswith(b"@")}
    times: dict[str, Any] = {t: float(h[t]) if t in h else None for t in _TIMES}
    fields = {f: _decode(f, h[f]) if f in h else None for f in TASK_FIELDS}
    return TaskRecord(task_id=task_id, state=h.get("state", "PENDING"),
                      updated_at=float(h["updated_at"]), **times, **fields)
