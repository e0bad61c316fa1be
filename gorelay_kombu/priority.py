"""The one place that defines priority direction.

GoRelay has three lanes served strictly in order: high, then normal, then
low.  Celery's ``priority`` is an integer 0-9 where **0 is the most urgent**
(as in GoRelay and in Celery on Redis):

=========  ======  =====
priority   lane    value
=========  ======  =====
0, 1, 2    high    0
3 .. 6     normal  1
7, 8, 9    low     2
unset      normal  1
=========  ======  =====

Lane values sort in service order, so ``ORDER BY lane`` is "high first".
"""

from __future__ import annotations

from typing import Any

HIGH = 0
NORMAL = 1
LOW = 2
LANES = (HIGH, NORMAL, LOW)
LANE_NAMES = {HIGH: "high", NORMAL: "normal", LOW: "low"}
LANE_BY_NAME = {name: lane for lane, name in LANE_NAMES.items()}

#: The Celery priority each lane is published with by the native API.
PRIORITY_FOR_LANE = {HIGH: 0, NORMAL: 5, LOW: 9}


def lane_for_priority(priority: Any) -> int:
    """Return the lane for a Celery/kombu priority (0 most urgent).

    ``None`` or anything that is not a number means "normal"; numbers
    outside 0-9 are clamped, as kombu clamps them.
    """
    if priority is None or isinstance(priority, bool):
        return NORMAL
    try:
        value = int(priority)
    except (TypeError, ValueError):
        return NORMAL
    value = min(max(value, 0), 9)
    if value <= 2:
        return HIGH
    if value <= 6:
        return NORMAL
    return LOW
