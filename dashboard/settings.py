"""Dashboard settings, the bind address and the rule that guards it.

The dashboard shows task arguments and results and can re-send, revoke and
purge, so it listens on 127.0.0.1 unless told otherwise, and refuses any
other address unless an access token is set (``--token`` or
``GORELAY_DASHBOARD_TOKEN``).  ``":8080"`` means ``127.0.0.1:8080``; to
listen on every interface say ``0.0.0.0:8080`` and give a token.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass

from .errors import UnsafeBindError, WeakTokenError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
#: the environment variable the CLI, ``serve`` and the Celery sub-command read
TOKEN_ENV = "GORELAY_DASHBOARD_TOKEN"
MIN_TOKEN_LENGTH = 16
#: Host header values accepted when a token-less dashboard listens on loopback
#: (a DNS-rebinding page would send its own host name)
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})


@dataclass(frozen=True)
class DashboardSettings:
    """How one dashboard behaves; every field has a safe default.

    Attributes:
        token: access token; None means no login (only safe on loopback).
        read_only: show everything, allow no action.
        secret: key for CSRF tokens and signed cookies; None derives one
            from ``token`` (so every process of a multi-process deployment
            agrees) or, without a token, picks a random one per process.
        heartbeat_interval: seconds between two worker heartbeats (Celery
            setting ``gorelay_worker_heartbeat``, default 5).
        lost_after: a worker not seen for this long that did not stop
            cleanly is "lost"; None means three heartbeat intervals.
        poll_interval: seconds between two checks of the store for the live
            feed (one check serves every open page).
        page_size: tasks per page by default (at most :data:`MAX_PAGE_SIZE`).
        bulk_limit: most tasks one "retry all" / "delete all" click handles.
        allowed_hosts: Host header values accepted (None: any).
        show_internal_queues: list Celery's own pidbox and event queues.
    """

    token: str | None = None
    read_only: bool = False
    secret: bytes | None = None
    heartbeat_interval: float = 5.0
    lost_after: float | None = None
    poll_interval: float = 0.3
    page_size: int = 50
    bulk_limit: int = 1000
    allowed_hosts: frozenset[str] | None = None
    show_internal_queues: bool = False

    def __post_init__(self) -> None:
        if self.token is not None and len(self.token) < MIN_TOKEN_LENGTH:
            raise WeakTokenError(
                f"The dashboard token is {len(self.token)} characters long; use at least "
                f"{MIN_TOKEN_LENGTH} random characters, e.g. the output of "
                "`python -c \"import secrets; print(secrets.token_urlsafe(24))\"`."
            )

    @property
    def worker_lost_after(self) -> float:
        return self.lost_after if self.lost_after is not None else 3 * self.heartbeat_interval


MAX_PAGE_SIZE = 200


def token_from_env(token: str | None) -> str | None:
    """``token`` if given, else ``$GORELAY_DASHBOARD_TOKEN`` (empty counts as unset)."""
    if token:
        return token
    return os.environ.get(TOKEN_ENV) or None


def parse_bind(bind: str) -> tuple[str, int]:
    """``"host:port"``, ``":port"``, ``"[::1]:port"``, ``"host"`` -> ``(host, port)``.

    An empty host is 127.0.0.1 and a missing port 8080.
    """
    text = bind.strip()
    host, port = text, ""
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise UnsafeBindError(f"Cannot read the bind address {bind!r}; write [::1]:8080.")
        host, rest = text[1:end], text[end + 1:]
        port = rest[1:] if rest.startswith(":") else rest
    elif text.count(":") == 1:
        host, port = text.split(":")
    host = host or DEFAULT_HOST
    try:
        number = int(port) if port else DEFAULT_PORT
    except ValueError:
        raise UnsafeBindError(
            f"The port in the bind address {bind!r} is not a number; write host:port, "
            "e.g. 127.0.0.1:8080."
        ) from None
    if not 0 <= number <= 65535:
        raise UnsafeBindError(f"Port {number} in {bind!r} is out of range (0-65535).")
    return host, number


def is_loopback(host: str) -> bool:
    """True when ``host`` only reaches this machine (127.0.0.0/8, ::1, localhost)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, token: str | None) -> None:
    """Refuse to listen beyond loopback without a token."""
    if token is None and not is_loopback(host):
        raise UnsafeBindError(
            f"Refusing to serve the dashboard on {host}, which other machines can reach, "
            "without an access token: task arguments and results would be readable and "
            f"actionable by anyone on the network. Pass --token (or set {TOKEN_ENV}), or "
            f"bind {DEFAULT_HOST} and reach it through an SSH tunnel or a reverse proxy."
        )
