"""The dashboard's errors, in the one tree rooted at :class:`GoRelayError`.

Each message says what went wrong and how to fix it; the web layer shows it
to the user as is (escaped), with the HTTP status of :attr:`status`.
"""

from __future__ import annotations

from ..errors import ConfigurationError, GoRelayError


class DashboardError(GoRelayError):
    """Root of the dashboard's errors."""

    #: HTTP status the web layer answers with
    status = 400


class UnsafeBindError(DashboardError, ConfigurationError):
    """Asked to listen beyond this machine without an access token."""


class WeakTokenError(DashboardError, ConfigurationError):
    """The access token is too short to protect the dashboard."""


class ActionRefused(DashboardError):
    """An action cannot be done on this task, queue or message as it stands."""

    status = 409


class ReadOnlyError(ActionRefused):
    """The dashboard runs read-only; actions are switched off."""

    status = 403


class NotFoundError(DashboardError):
    """The task, queue or message asked for is not (or no longer) in the store."""

    status = 404


class NoCeleryAppError(ActionRefused, ConfigurationError):
    """An action needs a Celery app (to publish or revoke) and none was given."""


class AccessDenied(DashboardError):
    """The request lacks the access token, a valid CSRF token or an allowed Host/Origin."""

    status = 403


class LoginRequired(AccessDenied):
    """The dashboard has an access token and the request did not carry it."""

    status = 401
