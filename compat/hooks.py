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
