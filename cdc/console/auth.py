"""Who may use the console, and protection against other sites' pages using it for them.

- Every page but the login form and the static files needs either a session cookie, given
  for the console's token at ``/login``, or ``Authorization: Bearer <token>`` (scripts).
- A session is ``<id>.<issued>.<mac>``, signed with a key derived from the token (changing
  the token ends every session), HttpOnly, ``SameSite=Strict``, valid 12 hours.
- Every POST made with a session carries a CSRF token bound to that session (a form field
  or the ``X-CSRF-Token`` header, which htmx sends), and every POST, the login's included,
  must come from the console's own origin (``Origin``, else ``Referer``).
- On loopback the ``Host`` header must be a loopback name too (DNS rebinding).

The token is compared in constant time and never logged."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

import structlog
from starlette.datastructures import FormData
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.types import ASGIApp

log = structlog.get_logger("cdc.console")

COOKIE = "cdc_console"
CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"
SESSION_S = 12 * 3600
LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})
OPEN_PATHS = ("/login", "/static/")


class Auth:
    """Sessions and CSRF tokens for one console token."""

    def __init__(self, token: str, session_s: float = SESSION_S) -> None:
        if not token:
            raise ValueError("the console needs a token")
        self._digest = hashlib.sha256(token.encode()).digest()
        self._key = hmac.new(token.encode(), b"cdc-console-session", hashlib.sha256).digest()
        self.session_s = session_s

    def token_ok(self, given: str) -> bool:
        return hmac.compare_digest(hashlib.sha256(given.encode()).digest(), self._digest)

    def _mac(self, text: str) -> str:
        return hmac.new(self._key, text.encode(), hashlib.sha256).hexdigest()

    def new_session(self, now: float | None = None) -> str:
        body = f"{secrets.token_urlsafe(18)}.{int(time.time() if now is None else now)}"
        return f"{body}.{self._mac(body)}"

    def session(self, cookie: str | None, now: float | None = None) -> str | None:
        """The session id a cookie carries, if it is ours and not expired."""
        if not cookie or cookie.count(".") != 2:
            return None
        sid, issued, mac = cookie.split(".")
        if not hmac.compare_digest(mac, self._mac(f"{sid}.{issued}")):
            return None
        age = (time.time() if now is None else now) - int(issued) if issued.isdigit() else -1
        return sid if 0 <= age <= self.session_s else None

    def csrf(self, sid: str) -> str:
        return self._mac(f"csrf:{sid}")

    def csrf_ok(self, sid: str, given: str | None) -> bool:
        return given is not None and hmac.compare_digest(given, self.csrf(sid))


def same_origin(request: Request) -> bool:
    """Whether a POST comes from a page of ours: its ``Origin`` (else ``Referer``) is this
    console's scheme and host."""
    ours = f"{request.url.scheme}://{request.headers.get('host', '')}"
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        referer = request.headers.get("referer")
        if referer is None:
            return False
        parts = urlsplit(referer)
        origin = f"{parts.scheme}://{parts.netloc}"
    return origin == ours


def bearer(request: Request) -> str | None:
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    return given.strip() if scheme.lower() == "bearer" else None


class Guard(BaseHTTPMiddleware):
    """Refuses what is not authenticated, or not from our origin, before any route runs;
    sets ``request.state.session`` (None for a bearer token) for the routes' CSRF check."""

    def __init__(self, app: ASGIApp, auth: Auth, loopback_only: bool) -> None:
        super().__init__(app)
        self.auth = auth
        self.loopback_only = loopback_only

    async def dispatch(
        self, request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        host = urlsplit(f"//{request.headers.get('host', '')}").hostname or ""
        if self.loopback_only and host not in LOOPBACK:
            return PlainTextResponse("unknown host", 400)
        token = bearer(request)
        request.state.session = self.auth.session(request.cookies.get(COOKIE))
        authenticated = request.state.session is not None or (
            token is not None and self.auth.token_ok(token)
        )
        if request.method not in ("GET", "HEAD") and token is None and not same_origin(request):
            log.warning("console.cross_site", path=request.url.path, client=_client(request))
            return PlainTextResponse("cross-site request refused", 403)
        if not authenticated and not request.url.path.startswith(OPEN_PATHS):
            if request.method in ("GET", "HEAD") and "hx-request" not in request.headers:
                return RedirectResponse(f"/login?next={request.url.path}", 303)
            return PlainTextResponse("authentication required", 401, {"HX-Redirect": "/login"})
        response = await call_next(request)
        response.headers.update(SECURITY_HEADERS)
        return response


SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'; form-action 'self'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


async def checked_form(request: Request, auth: Auth) -> FormData | None:
    """A POST's form, or None when its CSRF token does not match its session (a bearer
    token's request needs none: no browser sends one by itself)."""
    form = await request.form()
    sid: str | None = request.state.session
    if sid is None:
        return form if bearer(request) is not None else None
    given = request.headers.get(CSRF_HEADER) or form.get(CSRF_FIELD)
    if not auth.csrf_ok(sid, given if isinstance(given, str) else None):
        log.warning("console.csrf_refused", path=request.url.path, client=_client(request))
        return None
    return form


def _client(request: Request) -> str:
    return request.client.host if request.client else ""
