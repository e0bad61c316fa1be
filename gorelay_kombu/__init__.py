"""gorelay-kombu: a durable, zero-infrastructure Celery/kombu broker.

Importing this package registers the ``gorelay`` URL scheme with kombu;
nothing else happens at import time.  Celery processes do not need to
import it: the ``kombu.serializers`` entry point does (see README).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .errors import (
    ConfigurationError,
    GoRelayError,
    InvalidOption,
    InvalidURL,
    MessageTooLarge,
    NotAStoreError,
    SchemaVersionError,
    StoreAccessError,
    StoreAuthenticationError,
    StoreError,
    StoreKeyConflict,
    StoreLocationError,
    StorePermissionError,
    StoreUnavailable,
    UnsupportedStore,
)

__version__ = "0.1.0"

TRANSPORT = "gorelay_kombu.transport:Transport"

#: Callables run (and dropped once they return True) when a transport is
#: created; the Celery layer uses it to finish hooking into Celery.
ON_TRANSPORT_INIT: list[Callable[[], bool]] = []


def register() -> None:
    """Make kombu resolve ``gorelay://`` and ``gorelay+<store>://`` (idempotent)."""
    from kombu.transport import TRANSPORT_ALIASES

    TRANSPORT_ALIASES.setdefault("gorelay", TRANSPORT)


register()


def __getattr__(name: str) -> Any:
    # ``from gorelay_kombu import Relay`` imports Celery; ``import gorelay_kombu`` does not.
    if name == "Relay":
        from .compat.relay import Relay

        return Relay
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "Relay",
    "ConfigurationError", "GoRelayError", "InvalidOption", "InvalidURL", "MessageTooLarge",
    "NotAStoreError", "SchemaVersionError", "StoreAccessError", "StoreAuthenticationError",
    "StoreError", "StoreKeyConflict", "StoreLocationError", "StorePermissionError",
    "StoreUnavailable", "UnsupportedStore", "register", "__version__",
]
