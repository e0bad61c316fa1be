"""Access token, CSRF, Host/Origin checks, response headers and signed notices.

* **Token.** With a token set, a request passes with ``Authorization: Bearer
  <token>`` (scripts, Prometheus) or with the cookie the login form sets
  (an HMAC of the token, never the token itself).
* **CSRF.** Every state-changing request carries a token tied to a random
  per-browser cookie (``HMAC(secret, sid)``) in the form field
  ``csrf_token`` or the header ``X-CSRF-Token``, and an ``Origin`` (when the
  browser sends one) naming this host.  Bearer requests are exempt: browsers
  never add that header on their own.
* **Host.** A token-less dashboard on loopback accepts only loopback
  ``Host`` headers, so a DNS-rebinding page cannot read it.
* **Headers.** A strict Content-Security-Policy (no inline script, no
  third-party origin), ``nosniff``, no framing, no referrer to other sites (``same-origin``: with
  ``no-referrer`` browsers send ``Origin: null`` on form posts).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from urllib.parse import urlsplit

from flask import Request
from itsdangerous import BadSignature, URLSafeSerializer
from werkzeug.wrappers import Response

from .errors import AccessDenied, LoginRequired
from .settings import DashboardSettings

CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}


class Guard:
    """The checks one dashboard applies to every request."""

    def __init__(self, settings: DashboardSettings, cookie_prefix: str) -> None:
        self.settings = settings
        self.token = settings.token
        if settings.secret is not None:
            self.secret = settings.secret
        elif self.token is not None:
            self.secret = hmac.new(self.token.encode(), b"gorelay-dashboard-secret",
                                   hashlib.sha256).digest()
        else:
            self.secret = os.urandom(32)
        self.auth_cookie = f"{cookie_prefix}_auth"
        self.sid_cookie = f"{cookie_prefix}_sid"
        self.notice_cookie = f"{cookie_prefix}_notice"
        self._notices = URLSafeSerializer(self.secret, salt="gorelay-notice")

    # -- token -------------------------------------------------------------------
    def _mac(self, text: str) -> str:
        return hmac.new(self.secret, text.encode(), hashlib.sha256).hexdigest()

    def token_matches(self, candidate: str | None) -> bool:
        if self.token is None or not candidate:
            return False
        return hmac.compare_digest(candidate.encode(), self.token.encode())

    def bearer(self, request: Request) -> bool:
        """True when the request carries the token in an Authorization header."""
        header = request.headers.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        return scheme.lower() == "bearer" and self.token_matches(value.strip())

    @property
    def auth_cookie_value(self) -> str:
        return self._mac("auth")

    def signed_in(self, request: Request) -> bool:
        if self.token is None or self.bearer(request):
            return True
        value = request.cookies.get(self.auth_cookie, "")
        return hmac.compare_digest(value.encode(), self.auth_cookie_value.encode())

    def require_login(self, request: Request) -> None:
        if not self.signed_in(request):
            raise LoginRequired(
                "This dashboard needs its access token: sign in on the login page, or send "
                "'Authorization: Bearer <token>'."
            )

    # -- host and origin -----------------------------------------------------------
    def check_host(self, request: Request) -> None:
        allowed = self.settings.allowed_hosts
        if allowed is None:
            return
        host = request.host.lower()
        name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        if name not in allowed and host not in allowed:
            raise AccessDenied(
                f"Host {request.host!r} is not one this dashboard answers to "
                f"({', '.join(sorted(allowed))}). Open it by one of those names, or serve it "
                "with an access token to reach it by another name."
            )

    def check_origin(self, request: Request) -> None:
        """Refuse a request whose Origin header names another site."""
        origin = request.headers.get("Origin")
        if origin is None:
            return
        if origin == "null" or urlsplit(origin).netloc.lower() != request.host.lower():
            raise AccessDenied(
                f"Refused a request from another site (Origin {origin!r}); actions are only "
                "accepted from the dashboard's own pages."
            )

    # -- CSRF ----------------------------------------------------------------------
    def session_id(self, request: Request) -> tuple[str, bool]:
        """This browser's random id and whether it is new (then set the cookie)."""
        sid = request.cookies.get(self.sid_cookie, "")
        if len(sid) == 43 and sid.replace("-", "").replace("_", "").isalnum():
            return sid, False
        return secrets.token_urlsafe(32), True

    def csrf_token(self, sid: str) -> str:
        return self._mac("csrf:" + sid)

    def check_csrf(self, request: Request) -> None:
        self.check_origin(request)
        if self.bearer(request):
            return
        sid = request.cookies.get(self.sid_cookie, "")
        sent = request.headers.get(CSRF_HEADER) or request.form.get(CSRF_FIELD, "")
        if not sid or not sent or not hmac.compare_digest(
                sent.encode(), self.csrf_token(sid).encode()):
            raise AccessDenied(
                "The form's security token is missing or stale (CSRF check). Reload the page "
                "and try again; scripts send 'Authorization: Bearer <token>' instead."
            )

    # -- cookies and headers -------------------------------------------------------
    def set_cookie(self, response: Response, request: Request, name: str, value: str,
                   path: str, max_age: int | None = None, same_site: str = "Strict") -> None:
        response.set_cookie(name, value, max_age=max_age, path=path, httponly=True,
                            secure=request.is_secure, samesite=same_site)

    def add_headers(self, response: Response) -> Response:
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        if response.mimetype in ("text/html", "application/json"):
            response.headers.setdefault("Cache-Control", "no-store")
        return response

    # -- notices (one-shot messages after a redirect) --------------------------------
    def sign_notice(self, kind: str, text: str) -> str:
        return str(self._notices.dumps([kind, text[:2000]]))

    def read_notice(self, value: str | None) -> tuple[str, str] | None:
        if not value:
            return None
        try:
            kind, text = self._notices.loads(value)
        except (BadSignature, ValueError, TypeError):
            return None
        return str(kind), str(text)
