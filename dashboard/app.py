"""The dashboard object, its blueprint and a ready-made Flask app.

``create_app(url_or_store)`` is a complete WSGI app; ``create_blueprint``
gives the same pages to mount in your own Flask app under a prefix::

    app.register_blueprint(create_blueprint("gorelay://", token=...),
                           url_prefix="/tasks-admin")

Actions that publish or revoke (retry, cancel, revoke) need a Celery app:
pass ``celery_app=``; given only a URL, the dashboard builds a bare
``Celery(broker=url)`` the first time one is needed.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Flask

from ..history import History
from ..storage import Store, open_store
from .actions import Actions
from .errors import NoCeleryAppError
from .live import LiveFeed
from .reads import Reader
from .security import Guard
from .settings import DashboardSettings
from .views import build_blueprint

DEFAULT_NAME = "gorelay_dashboard"
#: largest request body accepted (forms and JSON actions are tiny)
MAX_CONTENT_LENGTH = 64 * 1024


class Dashboard:
    """One dashboard over one store: reader, actions, access guard and live feed.

    Args:
        url_or_store: a gorelay URL (the dashboard opens and owns the store)
            or an open :class:`Store` (the caller keeps ownership).
        history: where task history lives when not in the same store (a URL,
            a store or a :class:`History`); default: ``url_or_store``'s.
        celery_app: the Celery app used to re-send and revoke tasks.
        settings: a :class:`DashboardSettings`, or its fields as keywords.
    """

    def __init__(self, url_or_store: str | Store, *, history: str | Store | History | None = None,
                 celery_app: Any = None, settings: DashboardSettings | None = None,
                 name: str = DEFAULT_NAME, **options: Any) -> None:
        self.settings = settings if settings is not None else DashboardSettings(**options)
        if settings is not None and options:
            raise TypeError("Pass settings= or setting keywords, not both.")
        self.url = url_or_store if isinstance(url_or_store, str) else None
        self._owned: list[Store] = []
        self.store = self._open(url_or_store)
        if history is None:
            self.history = self.store.history()
        elif isinstance(history, History):
            self.history = history
        else:
            self.history = self._open(history).history()
        self.name = name
        self._celery_app = celery_app
        self._owns_celery_app = False
        self.reader = Reader(self.store, self.history, self.settings)
        self.actions = Actions(self.store, self.history, self.reader, self.settings,
                               self.celery_app)
        self.guard = Guard(self.settings, cookie_prefix=f"gorelay_{name}")
        self.feed = LiveFeed(self.reader, self.settings.poll_interval)

    def _open(self, target: str | Store) -> Store:
        if isinstance(target, Store):
            return target
        store = open_store(target)
        self._owned.append(store)
        return store

    def celery_app(self) -> Any:
        """The Celery app for actions (built from the URL on first use)."""
        if self._celery_app is None:
            if self.url is None:
                raise NoCeleryAppError(
                    "Retrying, cancelling and revoking publish through Celery: give the "
                    "dashboard your app (celery_app=app), or open it by URL so it can build "
                    "one."
                )
            from celery import Celery

            app = Celery("gorelay-dashboard", broker=self.url, set_as_current=False)
            # the dashboard records its own events (with retry_of); no second "sent"
            app.conf.gorelay_history = False
            self._celery_app, self._owns_celery_app = app, True
        return self._celery_app

    def blueprint(self) -> Blueprint:
        bp = build_blueprint(self, self.name)
        bp.gorelay_dashboard = self  # type: ignore[attr-defined]
        return bp

    def close(self) -> None:
        """Stop the live feed and close the stores this dashboard opened."""
        self.feed.close()
        if self._owns_celery_app:
            self._celery_app.close()
            self._celery_app, self._owns_celery_app = None, False
        for store in self._owned:
            store.close()
        self._owned.clear()


def create_blueprint(url_or_store: str | Store, **kwargs: Any) -> Blueprint:
    """A blueprint serving a new :class:`Dashboard` (same arguments).

    The dashboard object is ``blueprint.gorelay_dashboard``.
    """
    return Dashboard(url_or_store, **kwargs).blueprint()


def create_app(url_or_store: str | Store, *, token: str | None = None, read_only: bool = False,
               celery_app: Any = None, **kwargs: Any) -> Flask:
    """A Flask app serving the dashboard at ``/``.

    ``app.extensions["gorelay_dashboard"]`` is the :class:`Dashboard`.
    Other keywords are :class:`Dashboard` arguments and
    :class:`DashboardSettings` fields.
    """
    dash = Dashboard(url_or_store, token=token, read_only=read_only, celery_app=celery_app,
                     **kwargs)
    app = Flask("gorelay_kombu.dashboard")
    app.config["MAX_CONTENT_LENGTH"] = MAX_CONTENT_LENGTH
    app.register_blueprint(dash.blueprint())
    app.extensions["gorelay_dashboard"] = dash
    return app
