"""Jinja filters the dashboard's templates use (prefixed ``gr_`` so they never
clash with a host application's own filters).  They return plain text; Jinja
escapes it."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import datetime, timezone

from flask import Blueprint

from ..priority import LANE_NAMES


def ago(ts: float | None, now: float | None = None) -> str:
    """``"12 s ago"``, ``"5 min ago"``, ``"3 h ago"``, ``"2 d ago"`` (future: ``"in 5 s"``)."""
    if ts is None:
        return "—"
    delta = (time.time() if now is None else now) - ts
    future = delta < 0
    delta = abs(delta)
    if delta < 1:
        return "now"
    if delta < 60:
        text = f"{int(delta)} s"
    elif delta < 3600:
        text = f"{int(delta // 60)} min"
    elif delta < 86400:
        text = f"{int(delta // 3600)} h"
    else:
        text = f"{int(delta // 86400)} d"
    return f"in {text}" if future else f"{text} ago"


def when(ts: float | None) -> str:
    if ts is None:
        return "—"
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def iso(ts: float | None) -> str:
    if ts is None:
        return ""
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="milliseconds")


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms" if seconds >= 0.001 else f"{seconds * 1e6:.0f} µs"
    if seconds < 60:
        return f"{seconds:.0f} s" if float(seconds).is_integer() else f"{seconds:.2f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    return f"{minutes // 60} h {minutes % 60} min"


def pretty(text: str | None) -> str:
    """JSON text indented for reading; anything else (a cut preview) as it is."""
    if text is None:
        return ""
    try:
        return json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    except ValueError:
        return text


def num(value: int | float | None) -> str:
    if value is None:
        return "—"
    return f"{value:,}"


def lane(value: int | None) -> str:
    return "—" if value is None else LANE_NAMES.get(value, str(value))


def short_id(task_id: str) -> str:
    return task_id if len(task_id) <= 13 else task_id[:8] + "…"


FILTERS: dict[str, Callable[..., str]] = {
    "gr_ago": ago, "gr_when": when, "gr_iso": iso, "gr_duration": duration,
    "gr_pretty": pretty, "gr_num": num, "gr_lane": lane, "gr_short": short_id,
}


def register_filters(bp: Blueprint) -> None:
    for name, fn in FILTERS.items():
        bp.add_app_template_filter(fn, name)
