"""The acceptance app on a server store: ``celery -A server_accept_app worker``.

The tasks are :mod:`acceptance_app`'s; only the broker changes, to
``GORELAY_ACCEPT_BROKER_URL`` (a ``gorelay+postgresql://`` URL with its own
schema or a ``gorelay+redis://`` URL with its own key prefix).
"""

from __future__ import annotations

import os

import acceptance_app
from acceptance_app import app

app.conf.broker_url = os.environ["GORELAY_ACCEPT_BROKER_URL"]

__all__ = ["acceptance_app", "app"]
