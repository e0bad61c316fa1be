"""Serving the dashboard: blocking (:func:`serve`, the CLI) or in a thread
(:func:`serve_in_thread`, for ``relay.enable_dashboard(":8080")``).

Both use Werkzeug's WSGI server on a pool of reusable threads
(:class:`PooledWSGIServer`), which carries the websocket too (one thread
per open page).  Both bind 127.0.0.1 unless told otherwise and
refuse an address other machines can reach without an access token (the
argument, else ``$GORELAY_DASHBOARD_TOKEN``).  A token-less dashboard on
loopback answers only to loopback host names, so a DNS-rebinding web page
cannot read it.  For a large team, mount :func:`create_blueprint` in your
own WSGI server instead (gunicorn with threads works with flask-sock).
"""

from __future__ import annotations

import logging
import queue
import threading
from typing import Any

from flask import Flask
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler

from ..storage import Store
from .app import Dashboard, create_app
from .settings import LOOPBACK_HOSTS, check_bind, is_loopback, parse_bind, token_from_env

logger = logging.getLogger("gorelay_kombu.dashboard")


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


class PooledWSGIServer(BaseWSGIServer):
    """Werkzeug's server on a pool of reusable threads.

    A thread per request (Werkzeug's ``threaded=True``) would make every
    request a new thread, and stores that keep a connection per thread
    (SQLite) would open one per request.  Here idle threads take the next
    request; the pool grows to the peak number of concurrent requests (each
    open page's websocket holds one) and its threads stay for reuse.
    """

    multithread = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._jobs: queue.SimpleQueue[tuple[Any, Any] | None] = queue.SimpleQueue()
        self._idle = 0
        self._threads: list[threading.Thread] = []
        self._pool_lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._pool_lock:
            if self._idle == 0:
                worker = threading.Thread(target=self._work, name="gorelay-dashboard-http",
                                          daemon=True)
                self._threads.append(worker)
                self._idle += 1
                worker.start()
            self._idle -= 1
        self._jobs.put((request, client_address))

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            request, client_address = job
            try:
                self.finish_request(request, client_address)
            except Exception:
                self.handle_error(request, client_address)
            finally:
                with self._pool_lock:  # free before the close: the client may go on at once
                    self._idle += 1
                self.shutdown_request(request)

    @property
    def threads(self) -> int:
        return len(self._threads)

    def server_close(self) -> None:
        super().server_close()
        with self._pool_lock:
            for _ in self._threads:
                self._jobs.put(None)


class DashboardServer:
    """A running (or ready) dashboard HTTP server.

    Attributes:
        app: the Flask app; ``dashboard``: its :class:`Dashboard`;
        host, port: where it listens (port 0 asks for a free one);
        url: ``http://host:port/``.
    """

    def __init__(self, app: Flask, host: str, port: int, access_log: bool = True) -> None:
        self.app = app
        self.dashboard: Dashboard = app.extensions["gorelay_dashboard"]
        self.host = host
        self._server = PooledWSGIServer(
            host, port, app, None if access_log else _QuietHandler)
        self.port = self._server.server_port
        self.thread: threading.Thread | None = None

    @property
    def threads(self) -> int:
        """Threads serving requests so far (they are reused, see :class:`PooledWSGIServer`)."""
        return self._server.threads

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    def serve_forever(self) -> None:
        self._server.serve_forever(poll_interval=0.2)

    def serve_until_interrupted(self) -> None:
        """Serve in this thread until Ctrl-C, then stop."""
        try:
            self.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()

    def start(self) -> DashboardServer:
        self.thread = threading.Thread(target=self.serve_forever, name="gorelay-dashboard",
                                       daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, close open pages' sockets and the stores the dashboard opened."""
        self.dashboard.close()
        if self.thread is not None:
            self._server.shutdown()
            self.thread.join(5)
        self._server.server_close()

    #: the name ``Relay.shutdown`` calls
    shutdown = stop

    def __enter__(self) -> DashboardServer:
        return self

    def __exit__(self, *_: Any) -> None:
        self.stop()


def make_server_for(url_or_store: str | Store, bind: str = "127.0.0.1:8080", *,
                    token: str | None = None, access_log: bool = True,
                    **kwargs: Any) -> DashboardServer:
    """A :class:`DashboardServer` for ``url_or_store`` on ``bind``, not started yet.

    Keywords are :func:`create_app`'s (``read_only``, ``celery_app``,
    settings fields).  Raises :class:`UnsafeBindError` for a reachable
    address without a token and :class:`WeakTokenError` for a short token.
    """
    token = token_from_env(token)
    host, port = parse_bind(bind)
    check_bind(host, token)
    if token is None and "allowed_hosts" not in kwargs and is_loopback(host):
        kwargs["allowed_hosts"] = LOOPBACK_HOSTS | {host.lower()}
    app = create_app(url_or_store, token=token, **kwargs)
    try:
        return DashboardServer(app, host, port, access_log=access_log)
    except BaseException:
        app.extensions["gorelay_dashboard"].close()
        raise


def serve(url_or_store: str | Store, bind: str = "127.0.0.1:8080", **kwargs: Any) -> None:
    """Serve the dashboard until interrupted (Ctrl-C); see :func:`make_server_for`."""
    server = make_server_for(url_or_store, bind, **kwargs)
    logger.info("gorelay dashboard on %s", server.url)
    server.serve_until_interrupted()


def serve_in_thread(url_or_store: str | Store, bind: str = "127.0.0.1:8080", *,
                    access_log: bool = False, **kwargs: Any) -> DashboardServer:
    """Start the dashboard in a daemon thread and return its server (``.url``, ``.stop()``).

    ``bind=":8080"`` means 127.0.0.1:8080; ``"127.0.0.1:0"`` picks a free port.
    """
    return make_server_for(url_or_store, bind, access_log=access_log, **kwargs).start()
