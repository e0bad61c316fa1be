"""Errors of the native Relay API (all derive from :class:`~gorelay_kombu.GoRelayError`).

Each is raised in the caller, at ``register`` / ``enqueue`` time, so a
mistake never turns into a failure later in a worker; every message names
the fix.
"""

from __future__ import annotations

from ..errors import ConfigurationError, GoRelayError


class RelayError(GoRelayError):
    """Root of the errors of :class:`~gorelay_kombu.Relay`."""


class UnknownTopic(RelayError, LookupError):
    """``enqueue`` / ``schedule`` named a topic this Relay never registered."""


class TopicAlreadyRegistered(RelayError, ValueError):
    """``register`` was called twice for one topic (or the name is a task already)."""


class PayloadError(RelayError, TypeError):
    """A payload is of the wrong type, fails validation or cannot be encoded as JSON."""


class OutboxError(RelayError):
    """A transactional enqueue (``enqueue(..., connection=...)``) cannot be done."""


class NotSameDatabase(OutboxError, ConfigurationError):
    """The SQLAlchemy connection is not on the database of the Relay's store."""


class NotDeadError(RelayError, LookupError):
    """``relay.retry(task_id)`` named a task that is not dead (or was already re-driven)."""


class HandlerTimeout(RelayError, TimeoutError):
    """A handler ran longer than its topic's ``timeout`` (raised inside the handler)."""


class RelayStateError(RelayError, RuntimeError):
    """``start`` / ``shutdown`` / ``enable_dashboard`` called in the wrong state."""


__all__ = [
    "HandlerTimeout", "NotDeadError", "NotSameDatabase", "OutboxError", "PayloadError",
    "RelayError", "RelayStateError", "TopicAlreadyRegistered", "UnknownTopic",
]
