"""A separate process that consumes Celery events and writes them as JSON lines.

Usage: ``python event_consumer.py OUT_FILE`` with the ``GORELAY_ACCEPT_*``
environment of :mod:`acceptance_app`.  Writes ``{"type": "consumer-ready"}``
once its event queue is bound, then one line per event received.
"""

from __future__ import annotations

import json
import sys

from acceptance_app import app


def main(out: str) -> None:
    def write(obj: dict) -> None:
        with open(out, "a") as f:
            f.write(json.dumps(obj) + "\n")

    class Receiver(app.events.Receiver):
        def on_consume_ready(self, connection, channel, consumers, **kwargs):
            super().on_consume_ready(connection, channel, consumers, **kwargs)
            write({"type": "consumer-ready"})

    def on_event(event: dict) -> None:
        write({"type": event.get("type"), "uuid": event.get("uuid"),
               "hostname": event.get("hostname")})

    with app.connection_for_read() as conn:
        receiver = Receiver(conn, handlers={"*": on_event})
        receiver.capture(limit=None, timeout=None, wakeup=True)


if __name__ == "__main__":
    main(sys.argv[1])
