"""The native GoRelay API over Celery: register, enqueue, schedule, start.

::

    from dataclasses import dataclass
    from gorelay_kombu import Relay

    @dataclass
    class EmailPayload:
        to: str
        body: str

    relay = Relay()                      # SQLite ./relay.db; or Relay("gorelay+postgresql://…")

    @relay.register("email.send")        # the payload type comes from the annotation
    def send_email(p: EmailPayload) -> None:
        print("Sending to:", p.to)

    relay.start()                        # in-process workers (threads)
    relay.enqueue("email.send", EmailPayload(to="user@example.com", body="Welcome!"))

Every topic is a real Celery task of :attr:`Relay.celery` (one argument: the
payload as JSON), so ``celery -A myapp:relay worker`` runs the same
handlers, ``Relay(app=existing_app)`` adds topics to an existing app, and
history, results and the dashboard see relay tasks like any other.

* **Payloads** (:mod:`.relay_payloads`): dataclasses, TypedDicts, dicts,
  pydantic models; checked and encoded in the caller at ``enqueue``.
* **Retries** (:mod:`gorelay_kombu.retry`): exponential 1 s, 2 s, 4 s …
  capped at one hour with jitter by default, or fixed / linear; per topic
  ``max_retries``, ``retry_on``, ``dont_retry_on`` and ``timeout``.  Out of
  retries a task is DEAD, kept for :meth:`Relay.retry` (:mod:`.relay_dead`).
* **Priorities**: ``priority="high" | "normal" | "low"`` (or Celery's 0-9),
  served strictly in that order (:mod:`gorelay_kombu.priority`).
* **Idempotency keys**: ``enqueue(..., idempotency_key="welcome:42")``
  returns the first task's id for the same topic and key within
  ``idempotency_window`` seconds, atomically in the store (``kv_add``), across
  processes and machines.  The key is claimed before the task is sent, so a
  producer killed in between leaves a key whose task never existed until the
  window passes (at most one task per key, never two); with ``connection=``
  the key and the task commit together.
* **Outbox**: ``enqueue(..., connection=conn)`` writes the task in the
  caller's SQLAlchemy transaction (:mod:`.relay_outbox`).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from kombu.utils.uuid import uuid

from ..errors import ConfigurationError
from ..priority import LANE_BY_NAME, NORMAL, PRIORITY_FOR_LANE, lane_for_priority
from ..retry import DEFAULT_POLICY, RetryPolicy
from ..url import parse_store_url
from . import relay_dead
from .relay_errors import (
    PayloadError,
    RelayError,
    RelayStateError,
    TopicAlreadyRegistered,
    UnknownTopic,
)
from .relay_payloads import codec_for, payload_type_of
from .relay_task import Topic, make_task
from .relay_worker import InProcessWorker
from .stores import gorelay_url, shared_store, store_options

if TYPE_CHECKING:
    from celery import Celery, Task

    from ..storage import Store
    from .relay_outbox import Outbox

F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_URL = "gorelay://"
#: seconds an idempotency key keeps returning its first task's id
DEFAULT_IDEMPOTENCY_WINDOW = 24 * 3600.0
IDEMPOTENCY_PREFIX = "relay:idem:"
_MISSING: Any = object()


class Relay:
    """Topics, handlers and in-process workers over one Celery app; see the module docstring.

    Args:
        url: the store (``gorelay://`` = ``./relay.db``, ``gorelay+sqlite:///path.db``,
            ``gorelay+postgresql://…``, ``gorelay+redis://…``); broker and result
            backend of the Celery app this Relay creates.
        app: use this Celery app instead (its ``broker_url`` must be a gorelay URL);
            its configuration is left as it is.
        name: the main name of the Celery app this Relay creates.
        retry: the default retry policy of topics registered without one.
        idempotency_window: default seconds an idempotency key holds.
        **settings: more Celery settings for the app this Relay creates.
    """

    def __init__(self, url: str | None = None, *, app: Celery | None = None,
                 name: str = "relay", retry: RetryPolicy | None = None,
                 idempotency_window: float = DEFAULT_IDEMPOTENCY_WINDOW,
                 **settings: Any) -> None:
        if app is not None and (url is not None or settings):
            raise ConfigurationError(
                "Relay(app=...) uses that app's broker and settings; pass either a URL "
                "(and settings) or an app, not both."
            )
        if app is None:
            from celery import Celery

            url = url or DEFAULT_URL
            parse_store_url(gorelay_url(url))  # a bad URL fails here, clearly
            app = Celery(name, broker=url, backend=url)
            app.conf.update(broker_connection_retry_on_startup=True, **settings)
        else:
            url = str(app.conf.broker_url or "")
            if not url.startswith("gorelay"):
                raise ConfigurationError(
                    f"Relay(app=...) needs an app whose broker_url is a gorelay URL "
                    f"(gorelay://, gorelay+postgresql://…); this one has {url or 'none'!r}. "
                    "Set app.conf.broker_url first, or create Relay(url) instead."
                )
            parse_store_url(gorelay_url(url))
        if retry is not None and not isinstance(retry, RetryPolicy):
            raise ConfigurationError(
                f"retry must be a RetryPolicy (Exponential(), Fixed(seconds=5), Linear()); "
                f"got {retry!r}.")
        self._app: Celery = app
        self._url: str = gorelay_url(url)
        self._policy = retry or DEFAULT_POLICY
        self._idempotency_window = _seconds(idempotency_window, "idempotency_window")
        self._topics: dict[str, Topic] = {}
        self._tasks: dict[str, Task] = {}
        self._worker: InProcessWorker | None = None
        self._dashboard: Any = None
        self._outbox: Outbox | None = None
        if parse_store_url(self._url).kind == "sqlite":
            # Open (and create) the file now: a bad path fails here, and the first
            # open, which may switch the file to WAL, never happens inside a
            # caller's transaction on the same file (enqueue(..., connection=)).
            _ = self.store

    # -- what it is ----------------------------------------------------------------
    @property
    def celery(self) -> Celery:
        """The Celery app: every topic is one of its tasks."""
        return self._app

    @property
    def url(self) -> str:
        return self._url

    @property
    def store(self) -> Store:
        """The store of this process (shared with the result backend and history)."""
        options = store_options(self._url, self._app.conf.broker_transport_options,
                                "broker_transport_options")
        return shared_store(self._url, options)

    @property
    def topics(self) -> dict[str, Topic]:
        return dict(self._topics)

    def task(self, topic: str) -> Task:
        """The Celery task of ``topic``."""
        self._topic(topic)
        return self._tasks[topic]

    def __getattr__(self, name: str) -> Any:
        # ``celery -A myapp:relay worker`` treats the Relay as the app: delegate.
        if name.startswith("__") or "_app" not in self.__dict__:
            raise AttributeError(name)
        return getattr(self._app, name)

    def __repr__(self) -> str:
        return f"<Relay {self._url} topics={sorted(self._topics)}>"

    # -- registering ---------------------------------------------------------------
    def register(self, topic: str, handler: Callable[..., Any] | None = None,
                 payload_type: Any = _MISSING, *, retry: RetryPolicy | None = None,
                 max_retries: int | None = None,
                 retry_on: type[BaseException] | Sequence[type[BaseException]] | None = None,
                 dont_retry_on: type[BaseException] | Sequence[type[BaseException]] | None
                 = None, timeout: float | None = None, queue: str | None = None,
                 priority: str | int | None = None) -> Any:
        """Register ``handler`` for ``topic``; without a handler, return a decorator.

        ``payload_type`` defaults to the annotation of the handler's first
        parameter (no annotation: any JSON).  ``retry`` (default: the Relay's
        policy) with ``max_retries`` / ``retry_on`` / ``dont_retry_on``
        overriding its fields; ``timeout``: seconds a run may take;
        ``queue``: the Celery queue (default: the app's default queue);
        ``priority``: the topic's default lane.  Returns the handler.
        """
        if handler is None:
            def decorator(fn: F) -> F:
                self.register(topic, fn, payload_type, retry=retry, max_retries=max_retries,
                              retry_on=retry_on, dont_retry_on=dont_retry_on,
                              timeout=timeout, queue=queue, priority=priority)
                return fn
            return decorator
        if not isinstance(topic, str) or not topic:
            raise ConfigurationError(f"A topic is a non-empty string like 'email.send'; got "
                                     f"{topic!r}.")
        if not callable(handler):
            raise ConfigurationError(f"The handler of {topic!r} must be callable; got "
                                     f"{handler!r}.")
        if topic in self._topics:
            raise TopicAlreadyRegistered(
                f"Topic {topic!r} is already registered (to {self._topics[topic].describe()}). "
                "Each topic has one handler: pick another topic name, or remove the second "
                "register call."
            )
        if topic in self._app.tasks:
            raise TopicAlreadyRegistered(
                f"The Celery app already has a task named {topic!r}; a topic is a task of its "
                "own. Pick another topic name."
            )
        tp = payload_type_of(handler) if payload_type is _MISSING else payload_type
        policy = self._topic_policy(topic, retry, max_retries, retry_on, dont_retry_on)
        spec = Topic(
            name=topic, handler=handler, codec=codec_for(tp), policy=policy,
            timeout=None if timeout is None else _seconds(timeout, "timeout", positive=True),
            queue=queue, lane=_lane(priority, NORMAL),
        )
        self._tasks[topic] = make_task(self._app, spec, lambda: self.store)
        self._topics[topic] = spec
        return handler

    def _topic_policy(self, topic: str, retry: RetryPolicy | None, max_retries: int | None,
                      retry_on: Any, dont_retry_on: Any) -> RetryPolicy:
        if retry is not None and not isinstance(retry, RetryPolicy):
            raise ConfigurationError(
                f"retry for {topic!r} must be a RetryPolicy (Exponential(), Fixed(seconds=5), "
                f"Linear()); got {retry!r}.")
        policy = retry or self._policy
        changes: dict[str, Any] = {}
        if max_retries is not None:
            changes["max_retries"] = max_retries
        if retry_on is not None:
            changes["retry_on"] = retry_on
        if dont_retry_on is not None:
            changes["dont_retry_on"] = dont_retry_on
        return policy.replace(**changes) if changes else policy

    def _topic(self, topic: str) -> Topic:
        spec = self._topics.get(topic)
        if spec is None:
            known = ", ".join(sorted(self._topics)) or "none yet"
            raise UnknownTopic(
                f"Topic {topic!r} is not registered on this Relay (registered: {known}). "
                "Call relay.register(topic, handler) first — in the producer too, so the "
                "payload can be checked before it is sent."
            )
        return spec

    # -- enqueueing ----------------------------------------------------------------
    def enqueue(self, topic: str, payload: Any = None, *, priority: str | int | None = None,
                delay: float | None = None, idempotency_key: str | None = None,
                idempotency_window: float | None = None, connection: Any = None,
                task_id: str | None = None, _eta: dt.datetime | None = None) -> str:
        """Send one task for ``topic``; return its task id.

        ``priority``: ``"high"``, ``"normal"``, ``"low"`` or 0-9 (default: the
        topic's).  ``delay``: seconds before it may run.  ``idempotency_key``:
        within ``idempotency_window`` seconds (default: the Relay's) a second
        enqueue with the same topic and key sends nothing and returns the first
        task's id.  ``connection``: a SQLAlchemy ``Connection`` or ``Session``
        on the store's database; the task is written in its transaction and
        exists if and only if that transaction commits.
        """
        spec = self._topic(topic)
        try:
            data = spec.codec.encode(payload)
        except PayloadError as exc:
            raise PayloadError(f"enqueue({topic!r}): {exc}. The topic takes "
                               f"{spec.codec.name}.") from None
        options: dict[str, Any] = {"priority": PRIORITY_FOR_LANE[spec.lane] if priority is None
                                   else _celery_priority(priority)}
        if spec.queue:
            options["queue"] = spec.queue
        if delay is not None:
            options["countdown"] = _seconds(delay, "delay")
        if _eta is not None:
            options["eta"] = _eta
        task_id = task_id or uuid()
        window = self._idempotency_window if idempotency_window is None else \
            _seconds(idempotency_window, "idempotency_window", positive=True)
        key = None if idempotency_key is None else self._idempotency_key(topic, idempotency_key)
        if connection is not None:
            return self._get_outbox().enqueue(connection, self._tasks[topic], data, options,
                                              task_id, key, window)
        if key is not None:
            existing = self.store.kv_add(key, task_id.encode(), ttl=window)
            if existing is not None:
                return existing.decode()
        self._tasks[topic].apply_async(args=(data,), task_id=task_id, **options)
        return task_id

    def schedule(self, when: dt.datetime | dt.timedelta | float, topic: str,
                 payload: Any = None, **options: Any) -> str:
        """Like :meth:`enqueue`, to run at ``when``: an aware ``datetime`` (a naive one
        is local time), a ``timedelta`` from now, or epoch seconds."""
        if "delay" in options:
            raise ConfigurationError("schedule() takes a time, not a delay; use enqueue(..., "
                                     "delay=seconds) for a delay.")
        return self.enqueue(topic, payload, _eta=_eta(when), **options)

    @staticmethod
    def _idempotency_key(topic: str, key: str) -> str:
        if not isinstance(key, str) or not key:
            raise ConfigurationError(f"idempotency_key must be a non-empty string like "
                                     f"'welcome:42'; got {key!r}.")
        return f"{IDEMPOTENCY_PREFIX}{topic}:{key}"

    def _get_outbox(self) -> Outbox:
        if self._outbox is None:
            from .relay_outbox import Outbox

            self._outbox = Outbox(self._app, self._url, lambda: self.store)
        return self._outbox

    # -- dead tasks ------------------------------------------------------------------
    def retry(self, task_id: str) -> str:
        """Re-drive dead task ``task_id`` (same id, retries from 0); return the id."""
        return relay_dead.redrive(self._app, self.store, task_id)

    def dead(self, task_id: str) -> relay_dead.DeadTask | None:
        """The re-drivable record of dead task ``task_id``, or None."""
        return relay_dead.find(self.store, task_id)

    # -- running ---------------------------------------------------------------------
    def start(self, concurrency: int = 4, queues: Sequence[str] | None = None,
              loglevel: str | int | None = None, **worker_options: Any) -> Relay:
        """Run a worker in this process (``concurrency`` threads) until :meth:`shutdown`.

        ``queues``: default every queue a topic uses plus the app's default queue.
        """
        if self._worker is not None and self._worker.running:
            raise RelayStateError("This Relay's workers are already running; call "
                                  "relay.shutdown() before starting them again.")
        if queues is None:
            queues = sorted({self._app.conf.task_default_queue or "celery"}
                            | {t.queue for t in self._topics.values() if t.queue})
        worker = InProcessWorker(self._app, concurrency=concurrency, queues=queues,
                                 loglevel=loglevel, **worker_options)
        worker.start()
        self._worker = worker
        return self

    def shutdown(self, timeout: float = 30.0) -> bool:
        """Stop the workers (running tasks get ``timeout`` seconds to finish; what
        they leased but did not start goes back to the store) and the dashboard.

        Returns True when everything stopped within ``timeout``.
        """
        clean = True
        worker, self._worker = self._worker, None
        if worker is not None:
            clean = worker.stop(timeout)
        dashboard, self._dashboard = self._dashboard, None
        if dashboard is not None:
            stop = getattr(dashboard, "stop", None) or dashboard.shutdown
            stop()
        return clean

    def enable_dashboard(self, bind: str = ":8080", **options: Any) -> Any:
        """Serve the dashboard on ``bind`` in a thread until :meth:`shutdown`; return its server.

        ``":8080"`` is 127.0.0.1:8080, ``"127.0.0.1:0"`` a free port (the server's
        ``.url`` says which); ``options`` go to
        :func:`gorelay_kombu.dashboard.serve_in_thread`.
        """
        if self._dashboard is not None:
            raise RelayStateError("The dashboard is already enabled on this Relay.")
        try:
            from ..dashboard import serve_in_thread
        except ImportError as exc:
            raise RelayError(
                "The dashboard is not available in this installation "
                f"({exc}). Install it with pip install \"gorelay-kombu[dashboard]\"."
            ) from exc
        self._dashboard = serve_in_thread(self._url, bind, celery_app=self._app, **options)
        return self._dashboard

    def __enter__(self) -> Relay:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.shutdown()


# -- argument checks -------------------------------------------------------------------
def _seconds(value: Any, name: str, positive: bool = False) -> float:
    if isinstance(value, dt.timedelta):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, (int, float)) or \
            not math.isfinite(value) or value < 0 or (positive and value == 0):
        bound = "> 0" if positive else ">= 0"
        raise ConfigurationError(f"{name} must be a number of seconds {bound}; got {value!r}.")
    return float(value)


def _lane(priority: Any, default: int) -> int:
    if priority is None:
        return default
    return lane_for_priority(_celery_priority(priority))


def _celery_priority(priority: Any) -> int:
    if isinstance(priority, str) and priority in LANE_BY_NAME:
        return PRIORITY_FOR_LANE[LANE_BY_NAME[priority]]
    if isinstance(priority, int) and not isinstance(priority, bool) and 0 <= priority <= 9:
        return priority
    raise ConfigurationError(
        f"priority must be 'high', 'normal' or 'low' (or Celery's 0-9, 0 most urgent); "
        f"got {priority!r}."
    )


def _eta(when: Any) -> dt.datetime:
    if isinstance(when, dt.datetime):
        return when if when.tzinfo is not None else when.astimezone()
    if isinstance(when, dt.timedelta):
        return dt.datetime.now(dt.timezone.utc) + when
    if isinstance(when, (int, float)) and not isinstance(when, bool) and math.isfinite(when):
        return dt.datetime.fromtimestamp(when, dt.timezone.utc)
    raise ConfigurationError(
        f"when must be a datetime, a timedelta or epoch seconds; got {when!r}."
    )


__all__ = ["DEFAULT_IDEMPOTENCY_WINDOW", "Relay"]
