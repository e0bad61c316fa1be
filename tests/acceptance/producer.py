"""A producer process: ``python producer.py PREFIX COUNT RECORD_FILE``.

Publishes ``COUNT`` ``accept.record`` tasks tagged ``PREFIX-<i>`` to the
store named by ``GORELAY_ACCEPT_DB`` and prints ``sent COUNT``.
"""

from __future__ import annotations

import sys

from acceptance_app import app


def main(prefix: str, count: int, record_file: str) -> None:
    with app.producer_or_acquire() as producer:
        for i in range(count):
            app.send_task("accept.record", args=(record_file, f"{prefix}-{i}"),
                          producer=producer)
    print(f"sent {count}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3])
