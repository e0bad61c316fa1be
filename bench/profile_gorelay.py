"""Profile the gorelay+sqlite kombu publish or consume path (helper for kombu_bench).

Same workload as ``kombu_bench.py`` for one transport, with only the chosen
phase under ``cProfile``::

    python bench/profile_gorelay.py --phase publish --messages 5000
    python bench/profile_gorelay.py --phase consume --sort tottime --url memory://

Prints the top ``--top`` functions sorted by ``--sort`` (default cumtime).
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from kombu import Connection, Consumer, Exchange, Producer, Queue  # noqa: E402
from kombu_bench import make_bodies  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--phase", choices=("publish", "consume"), default="consume")
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--url", default="", help="default: gorelay+sqlite on a temp file")
    parser.add_argument("--sort", default="cumtime")
    parser.add_argument("--top", type=int, default=35)
    args = parser.parse_args()
    tmp = tempfile.mkdtemp(prefix="gorelay-prof-")
    url = args.url or f"gorelay+sqlite:///{tmp}/p.db"
    exchange = Exchange("prof-x", type="direct")
    queue = Queue("prof-q", exchange, routing_key="prof")
    bodies = make_bodies(args.messages, 200)
    profiler = cProfile.Profile()
    got = 0

    def on_message(body: object, message: object) -> None:
        nonlocal got
        got += 1
        message.ack()  # type: ignore[attr-defined]

    with Connection(url) as conn:
        channel = conn.channel()
        queue(channel).declare()
        producer = Producer(channel, exchange=exchange, routing_key="prof", serializer="json")
        if args.phase == "publish":
            profiler.enable()
        for body in bodies:
            producer.publish(body, retry=False)
        profiler.disable()
        with Consumer(conn.channel(), queues=[queue], callbacks=[on_message],
                      prefetch_count=100, accept=["json"]):
            if args.phase == "consume":
                profiler.enable()
            try:
                while got < args.messages:
                    conn.drain_events(timeout=5)
            except TimeoutError:  # socket.timeout
                print(f"timed out after {got}", file=sys.stderr)
            profiler.disable()
    stats = pstats.Stats(profiler)
    stats.sort_stats(args.sort).print_stats(args.top)


if __name__ == "__main__":
    main()
