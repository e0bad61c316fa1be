"""The dashboard's routes, on a Flask blueprint built for one :class:`Dashboard`.

Pages (server-rendered, escaped by Jinja): ``/`` overview, ``/tasks``,
``/tasks/<id>``, ``/failures``, ``/queues`` (and its purge confirmation),
``/workers``, ``/login``.  JSON: ``/api/overview``, ``/api/version``,
``/api/tasks``, ``/api/tasks/<id>``, ``/api/queues``, ``/api/workers``,
``/api/dead-letters``, ``/api/names``.  Actions: ``POST /actions/<name>``
(forms: redirect back with a notice) and ``POST /api/actions/<name>``
(JSON).  ``/metrics`` (Prometheus) and ``/live`` (websocket).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from flask import (
    Blueprint,
    g,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_sock import Sock
from werkzeug.wrappers import Response

from ..errors import GoRelayError, StoreUnavailable
from ..history import FINAL_STATES, STATES
from . import metrics as prometheus
from .actions import CANCELLABLE, RUNNING, Outcome
from .chart import throughput_chart
from .errors import AccessDenied, ActionRefused, DashboardError, LoginRequired, NotFoundError
from .live import serve_socket
from .reads import dead_letter_json, queue_json, task_json, worker_json
from .security import CSRF_FIELD
from .settings import MAX_PAGE_SIZE
from .templating import register_filters

if TYPE_CHECKING:
    from .app import Dashboard

PUBLIC_ENDPOINTS = frozenset({"login", "static"})
MAX_SEARCH = 200


def build_blueprint(dash: Dashboard, name: str) -> Blueprint:
    """The blueprint serving ``dash``; mount it with any ``url_prefix``."""
    bp = Blueprint(name, __name__, template_folder="templates", static_folder="static",
                   static_url_path="/assets")
    guard = dash.guard
    register_filters(bp)

    def endpoint() -> str:
        return (request.endpoint or "").rpartition(".")[2]

    def is_api() -> bool:
        return endpoint().startswith("api_") or endpoint() == "metrics"

    def root_path() -> str:
        return url_for(".overview")

    @bp.before_request
    def _check() -> Response | None:
        g.gorelay_notice_read = False
        guard.check_host(request)
        g.gorelay_sid, g.gorelay_new_sid = guard.session_id(request)
        if endpoint() not in PUBLIC_ENDPOINTS:
            guard.require_login(request)
        if request.method == "POST":
            guard.check_csrf(request)
        return None

    @bp.after_request
    def _headers(response: Response) -> Response:
        if getattr(g, "gorelay_new_sid", False):
            guard.set_cookie(response, request, guard.sid_cookie, g.gorelay_sid, root_path())
        if getattr(g, "gorelay_notice_read", False):
            response.delete_cookie(guard.notice_cookie, path=root_path())
        return guard.add_headers(response)

    @bp.errorhandler(GoRelayError)
    def _error(exc: GoRelayError) -> Any:
        # the dashboard's own errors carry a status; a store that is down is a 503
        status = exc.status if isinstance(exc, DashboardError) else (
            503 if isinstance(exc, StoreUnavailable) else 500)
        if is_api():
            return jsonify({"ok": False, "error": str(exc)}), status
        if isinstance(exc, LoginRequired) and request.method == "GET":
            return redirect(url_for(".login", next=request.full_path))
        if request.method == "POST" and not isinstance(exc, AccessDenied):
            return back_with("error", str(exc))
        return render_template("gorelay/error.html", message=str(exc), status=status,
                               **page_context()), status

    def page_context(**extra: Any) -> dict[str, Any]:
        notice = guard.read_notice(request.cookies.get(guard.notice_cookie))
        if notice is not None:
            g.gorelay_notice_read = True
        return {
            "store_kind": dash.store.kind, "read_only": dash.settings.read_only,
            "signed_in": guard.token is not None, "notice": notice, "csrf_field": CSRF_FIELD,
            "csrf_token": guard.csrf_token(getattr(g, "gorelay_sid", "")),
            "states": STATES, "here": request.full_path.rstrip("?"),
            "stamp": "" if extra.get("section") == "login" else dash.feed.current(), **extra,
        }

    def back_with(kind: str, message: str) -> Response:
        target = safe_next(request.form.get("next")) or root_path()
        response = redirect(target, code=303)
        guard.set_cookie(response, request, guard.notice_cookie,
                         guard.sign_notice(kind, message), root_path(), max_age=60)
        return response

    # -- pages -----------------------------------------------------------------------
    @bp.get("/")
    def overview() -> str:
        view = dash.reader.overview()
        return render_template("gorelay/overview.html", view=view,
                               chart=throughput_chart(view.throughput),
                               **page_context(section="overview"))

    @bp.get("/tasks")
    def tasks() -> str:
        f = TaskFilters(dash.settings.page_size)
        page = dash.history.tasks(**f.query)
        return render_template(
            "gorelay/tasks.html", page=page, f=f, counts=dash.reader.counts(),
            names=dash.history.names(), queues=[q.queue for q in dash.reader.queues()],
            **page_context(section="tasks"))

    @bp.get("/tasks/<path:task_id>")
    def task(task_id: str) -> str:
        record = dash.history.task(task_id)
        if record is None:
            raise NotFoundError(f"No task {task_id!r} in history (deleted or pruned?).")
        retry_refusal = None
        if record.state in FINAL_STATES:
            try:
                dash.actions.resend_plan(record)
            except ActionRefused as exc:
                retry_refusal = str(exc)
        return render_template(
            "gorelay/task.html", t=record, events=dash.history.events(task_id),
            can_retry=record.state in FINAL_STATES and retry_refusal is None,
            retry_refusal=retry_refusal, can_cancel=record.state in CANCELLABLE,
            can_revoke=record.state in RUNNING, **page_context(section="tasks"))

    @bp.get("/failures")
    def failures() -> str:
        state = request.args.get("state", "FAILURE")
        if state not in ("FAILURE", "DEAD"):
            state = "FAILURE"
        offset = int_arg("offset", 0)
        page = dash.history.tasks(state=state, offset=offset, limit=dash.settings.page_size)
        queues = dash.reader.queues(include_internal=True)
        return render_template(
            "gorelay/failures.html", page=page, state=state, offset=offset,
            limit=dash.settings.page_size, counts=dash.reader.counts(),
            letters=dash.reader.dead_letters(queues), **page_context(section="failures"))

    @bp.get("/queues")
    def queues() -> str:
        internal = request.args.get("internal") == "1"
        return render_template("gorelay/queues.html",
                               queues=dash.reader.queues(include_internal=internal or None),
                               internal=internal, **page_context(section="queues"))

    @bp.get("/queues/purge")
    def purge_confirm() -> str:
        queue = request.args.get("queue", "")
        row = next((q for q in dash.reader.queues(include_internal=True)
                    if q.queue == queue), None)
        if row is None:
            raise NotFoundError(f"No queue {queue!r} in the store.")
        return render_template("gorelay/purge.html", q=row, **page_context(section="queues"))

    @bp.get("/workers")
    def workers() -> str:
        return render_template("gorelay/workers.html", workers=dash.reader.workers(),
                               lost_after=dash.settings.worker_lost_after,
                               **page_context(section="workers"))

    @bp.route("/login", methods=["GET", "POST"])
    def login() -> Any:
        target = safe_next(request.values.get("next")) or root_path()
        if guard.token is None or guard.signed_in(request):
            return redirect(target, code=303)
        error = None
        if request.method == "POST":
            if guard.token_matches(request.form.get("token")):
                response = redirect(target, code=303)
                guard.set_cookie(response, request, guard.auth_cookie, guard.auth_cookie_value,
                                 root_path(), max_age=30 * 86400, same_site="Lax")
                return response
            error = "That is not this dashboard's access token."
        return render_template("gorelay/login.html", error=error, next=target,
                               **page_context(section="login")), 401 if error else 200

    @bp.post("/logout")
    def logout() -> Response:
        response = redirect(url_for(".login"), code=303)
        response.delete_cookie(guard.auth_cookie, path=root_path())
        return response

    # -- actions ---------------------------------------------------------------------
    def run_action(action: str, params: dict[str, Any]) -> Outcome:
        a = dash.actions
        task_id = str(params.get("task_id") or "")
        queue = str(params.get("queue") or "")
        handlers = {
            "retry": lambda: a.retry(task_id),
            "cancel": lambda: a.cancel(task_id),
            "revoke": lambda: a.revoke(task_id),
            "delete": lambda: a.delete(task_id),
            "retry-all": lambda: a.retry_all(str(params.get("state") or "")),
            "delete-all": lambda: a.delete_all(str(params.get("state") or "")),
            "purge": lambda: a.purge(queue, params.get("confirm")),
            "retry-dead-letter": lambda: a.retry_dead_letter(queue, message_id(params)),
            "delete-dead-letter": lambda: a.delete_dead_letter(queue, message_id(params)),
        }
        handler = handlers.get(action)
        if handler is None:
            raise NotFoundError(f"No action {action!r}; actions are {', '.join(handlers)}.")
        return handler()

    @bp.post("/actions/<action>")
    def action(action: str) -> Response:
        outcome = run_action(action, request.form.to_dict())
        return back_with("ok", outcome.message)

    @bp.post("/api/actions/<action>")
    def api_action(action: str) -> Response:
        params = request.get_json(silent=True) if request.is_json else None
        outcome = run_action(action, params if isinstance(params, dict)
                             else request.form.to_dict())
        return jsonify({"ok": True, "message": outcome.message, **outcome.data})

    # -- JSON ------------------------------------------------------------------------
    @bp.get("/api/overview")
    def api_overview() -> Response:
        return jsonify(dash.reader.overview().as_json())

    @bp.get("/api/version")
    def api_version() -> Response:
        return jsonify({"stamp": dash.reader.stamp()})

    @bp.get("/api/tasks")
    def api_tasks() -> Response:
        f = TaskFilters(dash.settings.page_size)
        page = dash.history.tasks(**f.query)
        return jsonify({"items": [task_json(t) for t in page.items], "has_more": page.has_more,
                        "offset": f.offset, "limit": f.limit})

    @bp.get("/api/tasks/<path:task_id>")
    def api_task(task_id: str) -> Response:
        record = dash.history.task(task_id)
        if record is None:
            raise NotFoundError(f"No task {task_id!r} in history (deleted or pruned?).")
        events = [{"event": e.event, "at": e.at, "worker": e.worker, "info": e.info}
                  for e in dash.history.events(task_id)]
        return jsonify({"task": task_json(record), "events": events})

    @bp.get("/api/queues")
    def api_queues() -> Response:
        internal = request.args.get("internal") == "1"
        return jsonify([queue_json(q) for q in dash.reader.queues(internal or None)])

    @bp.get("/api/workers")
    def api_workers() -> Response:
        return jsonify([worker_json(w) for w in dash.reader.workers()])

    @bp.get("/api/dead-letters")
    def api_dead_letters() -> Response:
        return jsonify([dead_letter_json(d) for d in dash.reader.dead_letters()])

    @bp.get("/api/names")
    def api_names() -> Response:
        return jsonify(dash.history.names())

    @bp.get("/metrics")
    def metrics() -> Response:
        return Response(prometheus.render(dash.reader), content_type=prometheus.CONTENT_TYPE)

    sock = Sock()

    @sock.route("/live", bp=bp)
    def live(ws: Any) -> None:
        guard.check_origin(request)
        serve_socket(ws, dash.feed)

    return bp


class TaskFilters:
    """The task list's query string, validated."""

    def __init__(self, page_size: int) -> None:
        args = request.args
        state = args.get("state", "")
        self.state = state if state in STATES else ""
        self.queue = args.get("queue", "")[:MAX_SEARCH]
        self.name = args.get("name", "")[:MAX_SEARCH]
        self.search = args.get("q", "").strip()[:MAX_SEARCH]
        self.root_id = args.get("root_id", "")[:MAX_SEARCH]
        self.order = "oldest" if args.get("order") == "oldest" else "newest"
        self.offset = int_arg("offset", 0)
        self.limit = min(max(int_arg("limit", page_size), 1), MAX_PAGE_SIZE)

    @property
    def query(self) -> dict[str, Any]:
        return {"state": self.state or None, "queue": self.queue or None,
                "name": self.name or None, "search": self.search or None,
                "root_id": self.root_id or None, "newest_first": self.order == "newest",
                "offset": self.offset, "limit": self.limit}

    def url_args(self, **changes: Any) -> str:
        values = {"state": self.state, "queue": self.queue, "name": self.name,
                  "q": self.search, "root_id": self.root_id, "order": self.order,
                  "offset": self.offset}
        values.update(changes)
        kept = {k: v for k, v in values.items()
                if v not in ("", None, 0) and not (k == "order" and v == "newest")}
        return "?" + urlencode(kept) if kept else ""


def int_arg(name: str, default: int) -> int:
    try:
        return max(int(request.args.get(name, default)), 0)
    except ValueError:
        return default


def message_id(params: dict[str, Any]) -> int:
    try:
        return int(params.get("message_id") or "")
    except ValueError:
        raise ActionRefused("message_id must be the dead letter's number.") from None


def safe_next(target: str | None) -> str | None:
    """``target`` if it is a path on this site (no scheme, no host), else None."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return None
    return target
