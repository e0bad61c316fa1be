"""``/metrics`` in the Prometheus text exposition format (version 0.0.4).

Gauges for queue depth by queue, lane and state, the age of the oldest
ready message, tasks by state and workers by status; a histogram of task
runtimes.  Everything comes from counters and ``queue_stats``, never a scan
of the tasks.  Celery's own pidbox and event queues are left out unless the
dashboard shows internal queues.
"""

from __future__ import annotations

import math
import time

from .reads import Reader

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(**labels: str) -> str:
    return "{" + ",".join(f'{k}="{_label(v)}"' for k, v in labels.items()) + "}"


def _num(value: float) -> str:
    if math.isinf(value):
        return "+Inf"
    if float(value).is_integer():
        return str(int(value))
    return repr(float(value))


def render(reader: Reader) -> str:
    """The whole exposition as text."""
    now = time.time()
    out: list[str] = []

    def family(name: str, kind: str, help_text: str) -> None:
        out.append(f"# HELP {name} {help_text}")
        out.append(f"# TYPE {name} {kind}")

    queues = reader.queues()
    family("gorelay_queue_messages", "gauge",
           "Messages in a queue lane by state (ready, scheduled, leased, dead).")
    for q in queues:
        for lane in q.lanes:
            for state in ("ready", "scheduled", "leased", "dead"):
                value = getattr(lane, state)
                out.append("gorelay_queue_messages"
                           + _labels(queue=q.queue, lane=lane.name, state=state)
                           + f" {value}")
    family("gorelay_queue_oldest_ready_age_seconds", "gauge",
           "Seconds the oldest ready message of a queue lane has waited (0: none).")
    for q in queues:
        for lane in q.lanes:
            age = max(0.0, now - lane.oldest_ready_at) if lane.oldest_ready_at else 0.0
            out.append("gorelay_queue_oldest_ready_age_seconds"
                       + _labels(queue=q.queue, lane=lane.name) + f" {age:.3f}")

    family("gorelay_tasks", "gauge", "Tasks in history by state.")
    for state, count in reader.counts().items():
        out.append("gorelay_tasks" + _labels(state=state) + f" {count}")

    buckets, count, total = reader.history.runtime_histogram()
    family("gorelay_task_runtime_seconds", "histogram", "Runtime of finished tasks.")
    for le, n in buckets:
        out.append("gorelay_task_runtime_seconds_bucket" + _labels(le=_num(le)) + f" {n}")
    if not buckets or not math.isinf(buckets[-1][0]):
        out.append("gorelay_task_runtime_seconds_bucket" + _labels(le="+Inf") + f" {count}")
    out.append(f"gorelay_task_runtime_seconds_sum {_num(total)}")
    out.append(f"gorelay_task_runtime_seconds_count {count}")

    workers = reader.workers(now)
    family("gorelay_workers", "gauge", "Known workers by status (live, lost, offline).")
    for status in ("live", "lost", "offline"):
        n = sum(1 for w in workers if w.status == status)
        out.append("gorelay_workers" + _labels(status=status) + f" {n}")
    family("gorelay_worker_up", "gauge", "1 for a live worker, 0 for a lost or offline one.")
    for w in workers:
        out.append("gorelay_worker_up" + _labels(hostname=w.record.hostname)
                   + f" {1 if w.status == 'live' else 0}")
    return "\n".join(out) + "\n"
