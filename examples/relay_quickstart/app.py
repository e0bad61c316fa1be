"""GoRelay's example, in Python: register a handler, start workers, enqueue.

    python app.py                      # in-process workers, like the Go library
    celery -A app:relay worker         # or a real Celery worker runs the same handlers
    python app.py --enqueue-only       # ... fed by a producer that runs no worker

The store is ``./relay.db`` (``Relay()`` is ``Relay("gorelay://")``); set
``RELAY_URL`` to use another one, e.g. ``gorelay+postgresql://user@db/app``.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

from gorelay_kombu import Relay
from gorelay_kombu.retry import Exponential


@dataclass
class EmailPayload:
    to: str
    body: str


relay = Relay(os.environ.get("RELAY_URL", "gorelay://"))


# Exponential backoff 1 s, 2 s, 4 s ... capped at one hour, with jitter (the default);
# here: five retries, only for errors worth retrying.
@relay.register("email.send", retry=Exponential(max_retries=5),
                retry_on=(ConnectionError, TimeoutError), timeout=30)
def send_email(p: EmailPayload) -> str:
    print(f"Sending to: {p.to}", flush=True)
    return f"sent {len(p.body)} characters to {p.to}"


def main(argv: list[str]) -> int:
    if "--enqueue-only" in argv:
        print("enqueued", relay.enqueue("email.send", EmailPayload("user@example.com",
                                                                   "Welcome!")))
        return 0
    if "--dashboard" in argv:
        relay.enable_dashboard(":8080")  # needs pip install "gorelay-kombu[dashboard]"
    relay.start()  # in-process workers (threads); relay.shutdown() stops them
    try:
        task_id = relay.enqueue("email.send",
                                EmailPayload(to="user@example.com", body="Welcome!"))
        print("result:", relay.celery.AsyncResult(task_id).get(timeout=60))
    finally:
        relay.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
