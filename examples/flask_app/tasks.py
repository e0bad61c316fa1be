"""The background side of the Flask example: one Relay, one topic.

Run its worker with ``celery -A tasks:relay worker`` (from this folder).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from gorelay_kombu import Relay

#: the store and the app's own tables share one SQLite file, so an enqueue
#: can be part of the request's transaction (see app.py)
DB = os.path.abspath(os.environ.get("APP_DB", "app.db"))

relay = Relay(f"gorelay+sqlite:///{DB}")


@dataclass
class Welcome:
    user_id: int
    email: str


@relay.register("email.welcome", max_retries=3)
def send_welcome(p: Welcome) -> str:
    # A real app would call its mail service here.
    print(f"welcome mail to {p.email} (user {p.user_id})", flush=True)
    return f"welcomed {p.email}"
