"""``celery -A app gorelay dashboard``: the dashboard with the app's own settings.

Registered in the ``celery.commands`` entry-point group, which the
``celery`` command loads.  Queues come from ``broker_url`` (with the store
options of ``broker_transport_options``), history from ``result_backend``
when that is a gorelay URL too (else from the broker's store), the worker
heartbeat from ``gorelay_worker_heartbeat``; retry, cancel and revoke go
through the app itself.
"""

from __future__ import annotations

from typing import Any

import click

from ..errors import GoRelayError
from .registry import heartbeat_interval
from .stores import gorelay_url, store_options


@click.group(name="gorelay", help="gorelay-kombu tools for this Celery app.")
def gorelay() -> None:
    pass


def app_stores(app: Any) -> tuple[str, dict[str, Any], str | None, dict[str, Any]]:
    """``(broker_url, broker store options, history_url or None, history options)``."""
    conf = app.conf
    broker = str(conf.get("broker_url") or "")
    if not broker.startswith("gorelay"):
        raise click.UsageError(
            f"This app's broker_url is {broker.split('://')[0] + '://' if broker else 'unset'}, "
            "not a gorelay URL; the dashboard reads gorelay stores only (broker_url = "
            "\"gorelay://\" or gorelay+postgresql://..., gorelay+redis://...).")
    broker_opts = store_options(broker, conf.get("broker_transport_options"),
                                "broker_transport_options")
    backend = str(conf.get("result_backend") or "")
    if backend.startswith("gorelay"):
        url = gorelay_url(backend)
        opts = store_options(url, conf.get("result_backend_transport_options"),
                             "result_backend_transport_options")
        if url != broker:
            return broker, broker_opts, url, opts
    return broker, broker_opts, None, {}


@gorelay.command(help="Serve the web dashboard over this app's gorelay store.")
@click.option("--bind", default="127.0.0.1:8080", show_default=True,
              help="host:port to listen on (':8080' is 127.0.0.1:8080; other addresses "
                   "need --token).")
@click.option("--token", default=None,
              help="access token (default: $GORELAY_DASHBOARD_TOKEN), at least 16 characters.")
@click.option("--read-only", is_flag=True, help="Show everything, allow no action.")
@click.option("--lost-after", type=float, default=None,
              help="Seconds without a heartbeat before a worker is lost (default: 3 "
                   "heartbeat intervals).")
@click.option("--quiet", is_flag=True, help="No access log.")
@click.pass_context
def dashboard(ctx: click.Context, bind: str, token: str | None, read_only: bool,
              lost_after: float | None, quiet: bool) -> None:
    from ..dashboard import make_server_for
    from ..storage import open_store

    app = ctx.obj.app
    broker, broker_opts, history_url, history_opts = app_stores(app)
    try:
        store = open_store(broker, broker_opts)
        history = open_store(history_url, history_opts) if history_url else None
        server = make_server_for(
            store, bind, token=token, read_only=read_only, celery_app=app, history=history,
            heartbeat_interval=heartbeat_interval(app), lost_after=lost_after,
            access_log=not quiet)
    except GoRelayError as exc:
        raise click.ClickException(str(exc)) from exc
    mode = ", read-only" if read_only else ""
    click.echo(f"gorelay dashboard on {server.url} ({store.kind} store{mode}); Ctrl-C to stop")
    try:
        server.serve_until_interrupted()
    finally:
        store.close()
        if history is not None:
            history.close()
