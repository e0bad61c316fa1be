"""The ``gorelay`` command.

``gorelay dashboard URL [--bind 127.0.0.1:8080] [--token T] [--read-only]``
serves the dashboard over the store at ``URL`` (any gorelay URL).  The
token may come from ``$GORELAY_DASHBOARD_TOKEN`` instead (better: a token on
the command line shows in ``ps``).  An address other than loopback needs a
token.  For a Celery app's own settings use ``celery -A app gorelay
dashboard``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from .errors import GoRelayError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gorelay", description="gorelay-kombu tools.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True
    dash = commands.add_parser(
        "dashboard", help="serve the web dashboard over a store",
        description="Serve the web dashboard over the gorelay store at URL.")
    dash.add_argument("url", metavar="URL",
                      help="store URL, e.g. gorelay:// or gorelay+postgresql://user@db/app")
    dash.add_argument("--bind", default="127.0.0.1:8080",
                      help="host:port to listen on (default 127.0.0.1:8080; ':8080' is "
                           "127.0.0.1:8080; other addresses need --token)")
    dash.add_argument("--token", default=None,
                      help="access token (default: $GORELAY_DASHBOARD_TOKEN); at least 16 "
                           "characters")
    dash.add_argument("--read-only", action="store_true",
                      help="show everything, allow no action")
    dash.add_argument("--history-url", default=None,
                      help="store holding task history when it is not URL's (the Celery "
                           "result_backend)")
    dash.add_argument("--heartbeat-interval", type=float, default=5.0,
                      help="workers' heartbeat interval in seconds (gorelay_worker_heartbeat)")
    dash.add_argument("--lost-after", type=float, default=None,
                      help="seconds without a heartbeat before a worker is lost "
                           "(default: 3 intervals)")
    dash.add_argument("--quiet", action="store_true", help="no access log")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``gorelay`` console script; returns the exit status."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        return _dashboard(args)
    except GoRelayError as exc:
        print(f"gorelay: {exc}", file=sys.stderr)
        return 2


def _dashboard(args: argparse.Namespace) -> int:
    from .dashboard import make_server_for

    server = make_server_for(
        args.url, args.bind, token=args.token, read_only=args.read_only,
        history=args.history_url, heartbeat_interval=args.heartbeat_interval,
        lost_after=args.lost_after, access_log=not args.quiet)
    dash = server.dashboard
    mode = ", read-only" if dash.settings.read_only else ""
    auth = ", token required" if dash.settings.token else ""
    print(f"gorelay dashboard on {server.url} ({dash.store.kind} store{mode}{auth}); "
          "Ctrl-C to stop", flush=True)
    server.serve_until_interrupted()
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
