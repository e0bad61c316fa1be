"""The gorelay dashboard (installed as ``gorelay_kombu.dashboard``).

A Flask app over any gorelay store: tasks by state, queues and lanes,
throughput, workers, task detail with its timeline; retry, cancel, revoke,
delete and purge; live over a websocket; ``/metrics`` for Prometheus.

Start it with ``gorelay dashboard URL``, ``celery -A app gorelay dashboard``,
:func:`serve_in_thread` (what ``relay.enable_dashboard(":8080")`` calls), or
mount :func:`create_blueprint` in your own Flask app.  Needs the
``dashboard`` extra: ``pip install "gorelay-kombu[dashboard]"``.
"""

from __future__ import annotations

try:
    import flask  # noqa: F401
    import flask_sock  # noqa: F401
except ModuleNotFoundError as exc:  # pragma: no cover - depends on the install
    from ..errors import ConfigurationError

    raise ConfigurationError(
        f"The dashboard needs {exc.name}: pip install \"gorelay-kombu[dashboard]\"."
    ) from exc

from .app import Dashboard, create_app, create_blueprint
from .errors import (
    AccessDenied,
    ActionRefused,
    DashboardError,
    LoginRequired,
    NoCeleryAppError,
    NotFoundError,
    ReadOnlyError,
    UnsafeBindError,
    WeakTokenError,
)
from .server import DashboardServer, make_server_for, serve, serve_in_thread
from .settings import TOKEN_ENV, DashboardSettings

__all__ = [
    "AccessDenied", "ActionRefused", "Dashboard", "DashboardError", "DashboardServer",
    "DashboardSettings", "LoginRequired", "NoCeleryAppError", "NotFoundError", "ReadOnlyError",
    "TOKEN_ENV", "UnsafeBindError", "WeakTokenError", "create_app", "create_blueprint",
    "make_server_for", "serve", "serve_in_thread",
]
