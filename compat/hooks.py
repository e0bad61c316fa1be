"""Entry-point targets that make ``gorelay://`` work without an import.

kombu has no entry-point group for transports, but it loads the
``kombu.serializers`` group whenever :mod:`kombu.serialization` is imported,
which every Celery process (producer or worker) and every kombu producer
does before it opens a connection.  Loading :data:`SERIALIZER` imports this
module, which imports :mod:`gorelay_kombu` and so registers the transport
alias.  The serializer itself is a plain JSON codec registered under the name
``gorelay-json``; nothing uses it unless asked to.
"""

from __future__ import annotations

import json
from typing import Any

import gorelay_kombu  # noqa: F401  (registers the gorelay transport alias)


def _encode(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"))


def _decode(data: str | bytes) -> Any:
    return json.loads(data)


#: ``kombu.serialization.register(name, *SERIALIZER)`` arguments.
SERIALIZER = (_encode, _decode, "application/x-gorelay-json", "utf-8")


def _mark_unset_priority(properties: dict[str, Any] | None = None, **_: Any) -> None:
    """Tell "no priority" apart from priority 0.

    kombu's ``Producer.publish`` defaults ``priority=0``, so a Celery task sent
    without a priority would land in the high lane.  Celery passes the
    priority through ``properties`` only when one was given; an explicit
    ``None`` lets the gorelay transport put the task in the normal lane.
    Other transports treat ``None`` exactly as they treat a missing priority.
    """
    if properties is not None:
        properties.setdefault("priority", None)


def connect_celery_signals() -> bool:
    """Connect the Celery signal handlers once Celery is importable; True when done.

    This module is often loaded while ``celery.signals`` itself is still
    being imported (kombu loads its entry points mid-import), so a failure
    here is retried when a gorelay transport is created.
    """
    try:
        from celery import signals

        signals.before_task_publish.connect(
            _mark_unset_priority, weak=False, dispatch_uid="gorelay-unset-priority"
        )
        from . import signals as history_signals

        history_signals.connect()
    except (ImportError, AttributeError):
        return False
    return True


if not connect_celery_signals():
    gorelay_kombu.ON_TRANSPORT_INIT.append(connect_celery_signals)
