"""The throughput chart: stacked bars per minute, drawn as plain SVG.

Geometry is computed here and the template writes ``<rect>`` elements, so
the chart needs no JavaScript and no library; each bar carries a
``<title>`` for its tooltip.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

WIDTH = 720
HEIGHT = 180
LEFT = 44
RIGHT = 8
TOP = 10
BOTTOM = 22


@dataclass(frozen=True)
class Bar:
    x: float
    width: float
    ok_y: float
    ok_height: float
    failed_y: float
    failed_height: float
    title: str


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    bars: list[Bar]
    #: (y, label) of horizontal grid lines
    grid: list[tuple[float, str]]
    #: (x, label) under the bars
    ticks: list[tuple[float, str]]
    succeeded: int
    failed: int
    left: int = LEFT
    right_edge: int = WIDTH - RIGHT
    baseline: float = HEIGHT - BOTTOM


def nice_ceiling(value: int) -> int:
    """The smallest 1, 2 or 5 times a power of ten that is >= ``value`` (at least 1)."""
    if value <= 1:
        return 1
    power = 10 ** int(math.floor(math.log10(value)))
    for step in (1, 2, 5, 10):
        if step * power >= value:
            return step * power
    return 10 * power  # pragma: no cover


def throughput_chart(series: list[tuple[int, int, int]]) -> Chart:
    """Bars for ``(minute, succeeded, failed)`` rows, oldest first."""
    top = nice_ceiling(max((s + f for _, s, f in series), default=0))
    plot_w = WIDTH - LEFT - RIGHT
    plot_h = HEIGHT - TOP - BOTTOM
    slot = plot_w / max(len(series), 1)
    gap = min(2.0, slot * 0.2)
    base = HEIGHT - BOTTOM
    bars = []
    for i, (minute, ok, failed) in enumerate(series):
        ok_h = plot_h * ok / top
        failed_h = plot_h * failed / top
        label = time.strftime("%H:%M", time.gmtime(minute * 60))
        bars.append(Bar(
            x=round(LEFT + i * slot + gap / 2, 2), width=round(slot - gap, 2),
            ok_y=round(base - ok_h, 2), ok_height=round(ok_h, 2),
            failed_y=round(base - ok_h - failed_h, 2), failed_height=round(failed_h, 2),
            title=f"{label} UTC: {ok} succeeded, {failed} failed",
        ))
    # counts are whole numbers: a middle line only where it falls on one
    fracs = (0.0, 0.5, 1.0) if top % 2 == 0 else (0.0, 1.0)
    grid = [(round(base - plot_h * frac, 2), str(int(top * frac))) for frac in fracs]
    ticks = []
    if series:
        n = len(series)
        for i, text in ((0, f"-{n} min"), (n // 2, f"-{n - n // 2} min"), (n - 1, "now")):
            ticks.append((round(LEFT + (i + 0.5) * slot, 2), text))
    return Chart(WIDTH, HEIGHT, bars, grid, ticks,
                 sum(s for _, s, _ in series), sum(f for _, _, f in series))
