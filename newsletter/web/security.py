"""Web safety: security headers, body size limits, per-IP rate limits, error pages (CSRF: web/csrf.py)."""

from __future__ import annotations

import hmac
import ipaddress
import logging
import os
import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import redis
from fastapi import FastAPI, Request
from fastapi.exception_handlers import (
    http_exception_handler,
    request_validation_exception_handler,
)
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse, Response

from newsletter.core.config import Settings
from newsletter.queue.connection import redis_client
from newsletter.services.auth import LoginUnavailable, client_block, count_hit
from newsletter.web.csrf import CSRF_COOKIE, CSRFError, OriginRefused
from newsletter.web.pages import render, settings_of

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


# No inline scripts or styles anywhere; pages load /static only. Admin previews of emails
# (which need inline styles) set their own CSP on that one response.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "font-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'"
)
HEADERS = {
    "content-security-policy": CSP,
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "x-content-type-options": "nosniff",
    "permissions-policy": "camera=(), microphone=(), geolocation=(), interest-cohort=()",
    "cross-origin-opener-policy": "same-origin",
}


def csp_framed_by(origins: tuple[str, ...]) -> str:
    """The CSP of a page her listed websites may frame (and nobody else: 'none' without any)."""
    return CSP.replace(
        "frame-ancestors 'none'", "frame-ancestors " + (" ".join(origins) or "'none'")
    )


def allow_framing(request: Request, origins: tuple[str, ...]) -> None:
    """Let this one response be framed by `origins` (her websites): frame-ancestors names them,
    X-Frame-Options (which can't name a site) is left off, and the referrer policy lets the
    form inside send its Origin (a no-referrer page posts `Origin: null`). Every other
    response keeps frame-ancestors 'none' and DENY."""
    request.state.frame_ancestors = origins


def _framed_headers(headers: dict[str, str], origins: tuple[str, ...]) -> dict[str, str]:
    framed = {k: v for k, v in headers.items() if k != "x-frame-options"}
    framed["content-security-policy"] = csp_framed_by(origins)
    framed["referrer-policy"] = "strict-origin"
    return framed


# The one table of request body limits, by path prefix (first match wins), enforced before
# any authentication; public forms are tiny.
BODY_LIMITS: tuple[tuple[str, int], ...] = (
    ("/admin/login", 16 * 1024),  # a password form: small, and checked before the password
    ("/admin/series-editor/", 2 * 1024 * 1024),  # a live preview: one part, up to 200,000 chars
    ("/webhooks/sendgrid", 8 * 1024 * 1024),  # SendGrid posts ≤ 768 KB per batch; room, no floods
    ("/admin", 10 * 1024 * 1024),  # CSV imports
    ("/api", 10 * 1024 * 1024),
    ("", 64 * 1024),
)


def body_limit(path: str) -> int:
    """The most bytes a request body to `path` may have."""
    return next(size for prefix, size in BODY_LIMITS if path.startswith(prefix))


# Signups per IP address per window.
SIGNUP_LIMIT = 10
SIGNUP_WINDOW_SECONDS = 3600


class RateLimited(Exception):
    """Too many requests from one address; `retry_after` seconds until the window ends."""

    def __init__(self, retry_after: int) -> None:
        super().__init__("rate limited")
        self.retry_after = retry_after


# --- rate limits ---------------------------------------------------------------------------


def redis_for(request: Request) -> redis.Redis:
    """The app's Redis client (one per app)."""
    client: redis.Redis | None = getattr(request.app.state, "redis", None)
    if client is None:
        client = redis_client(settings_of(request))
        request.app.state.redis = client
    return client


def client_ip(request: Request) -> str:
    """The visitor's address: the peer, or what a trusted proxy named (uvicorn's proxy headers)."""
    return request.client.host if request.client else "unknown"


# Headers by which a proxy names the visitor. uvicorn believes X-Forwarded-For from the peers
# in FORWARDED_ALLOW_IPS (127.0.0.1 when unset), so behind a proxy the "client" is whatever the
# proxy (or whoever reached it) said.
FORWARDING_HEADERS = ("x-forwarded-for", "forwarded", "x-real-ip")


def proxy_headers_trusted(request: Request) -> bool:
    """True when a proxy may be naming this request's client: the server was told to trust one
    (FORWARDED_ALLOW_IPS is set) or the request carries a forwarding header."""
    if os.environ.get("FORWARDED_ALLOW_IPS", "").strip():
        return True
    return any(name in request.headers for name in FORWARDING_HEADERS)


def direct_from_this_machine(request: Request) -> bool:
    """The request came straight from this machine: the peer is a loopback address and no proxy
    headers are trusted. A name (`localhost`, whatever a proxy forwarded) is never loopback."""
    if proxy_headers_trusted(request):
        return False
    try:
        return ipaddress.ip_address(client_ip(request)).is_loopback
    except ValueError:
        return False


def hit_rate_limit(
    request: Request, bucket: str, limit: int = SIGNUP_LIMIT, window: int = SIGNUP_WINDOW_SECONDS
) -> None:
    """Count one request from this IP in `bucket`; RateLimited once over `limit` per `window`.

    An IPv6 client counts as its /64 (auth.client_block). The key holds a hash of the address,
    never the address itself.
    """
    settings = settings_of(request)
    client = client_block(client_ip(request))
    digest = hmac.new(settings.secret.encode(), client.encode(), "sha256").hexdigest()
    key = f"{settings.redis_prefix}ratelimit:{bucket}:{digest[:24]}"
    try:
        count, ttl = count_hit(redis_for(request), key, window)  # Redis 6.2 commands only
    except redis.RedisError:  # a Redis blip must not stop people signing up
        log.warning("rate limit not checked: Redis unavailable")
        return
    if count > limit:
        raise RateLimited(max(ttl, 1))


# --- ASGI middleware -----------------------------------------------------------------------


class SecurityMiddleware:
    """Security headers on every response, the CSRF cookie when new, and body size limits."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.secure_cookie = settings.public_is_https
        self.headers = dict(HEADERS)
        if settings.public_is_https:
            self.headers["strict-transport-security"] = "max-age=31536000"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        limit = body_limit(path)
        length = _content_length(scope)
        if length is not None and length > limit:
            await _too_large(scope, receive, send)
            return

        state = scope.setdefault("state", {})  # request.state writes here (csrf_new)
        received = 0
        over = False  # the body grew past the limit (the app may have turned that into a 400)
        started = False

        async def limited_receive() -> Message:
            nonlocal received, over
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    over = True
                    raise _BodyTooLarge()
            return message

        async def wrapped_send(message: Message) -> None:
            nonlocal started
            if over:  # whatever the app answers, the reader gets the 413 page
                if message["type"] == "http.response.start" and not started:
                    started = True
                    await _too_large(scope, receive, send)
                return
            if message["type"] == "http.response.start":
                started = True
                headers = list(message.get("headers", []))
                present = {k.decode("latin-1").lower() for k, _ in headers}
                framed = state.get("frame_ancestors") if isinstance(state, dict) else None
                ours = self.headers if framed is None else _framed_headers(self.headers, framed)
                for name, value in ours.items():
                    if name not in present:
                        headers.append((name.encode(), value.encode()))
                new = state.get("csrf_new") if isinstance(state, dict) else None
                if new:
                    cookie = f"{CSRF_COOKIE}={new}; Path=/; HttpOnly; SameSite=Lax"
                    if self.secure_cookie:
                        cookie += "; Secure"
                    headers.append((b"set-cookie", cookie.encode()))
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, limited_receive, wrapped_send)
        except _BodyTooLarge:
            if not started:
                started = True
                await _too_large(scope, receive, send)


class _BodyTooLarge(Exception):
    pass


def _content_length(scope: Scope) -> int | None:
    for key, value in scope.get("headers", []):
        if key == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _too_large(scope: Scope, receive: Receive, send: Send) -> None:
    body = (
        b"<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        b"<title>Too much data</title><link rel='stylesheet' href='/static/style.css'></head>"
        b"<body><main class='page'><h1>That was more than we can accept</h1>"
        b"<p>The form sent more data than expected. Please go back and try again.</p>"
        b"<p><a href='/'>Back to the start</a></p></main></body></html>"
    )
    headers = [
        (b"content-type", b"text/html; charset=utf-8"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
    ] + [(k.encode(), v.encode()) for k, v in HEADERS.items()]
    await send({"type": "http.response.start", "status": 413, "headers": headers})
    await send({"type": "http.response.body", "body": body})


# --- friendly error pages ------------------------------------------------------------------

ERRORS: dict[int, tuple[str, str]] = {
    400: (
        "Something in that request didn't look right",
        "Please go back and try again. If it keeps happening, the link may be incomplete.",
    ),
    403: ("This page isn't available", "You may need to sign in first."),
    404: (
        "We couldn't find that page",
        "The link may be incomplete or the page may have moved.",
    ),
    405: ("That didn't work", "This page can't be used that way. Please go back and try again."),
    413: (
        "That was more than we can accept",
        "The form sent more data than expected. Please go back and try again.",
    ),
    429: (
        "Let's take a short pause",
        "We've had a lot of requests from your connection. Please try again a little later.",
    ),
    500: (
        "Something went wrong on our side",
        "Nothing you did caused this. Please try again in a few minutes.",
    ),
}


def _wants_json(request: Request) -> bool:
    return request.url.path.startswith(("/api", "/webhooks", "/healthz"))


def error_page(request: Request, status: int, detail: str | None = None) -> Response:
    """The friendly page (or a small JSON body for the API) for an error status."""
    title, text = ERRORS.get(status, ERRORS[400] if status < 500 else ERRORS[500])
    if _wants_json(request):
        return JSONResponse({"detail": detail or title}, status_code=status)
    return render(request, "error.html", {"title": title, "text": text, "status": status}, status)


def install(app: FastAPI, settings: Settings) -> None:
    """Wire middleware and error handlers into the app."""
    app.add_middleware(SecurityMiddleware, settings=settings)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        if _wants_json(request):
            return await http_exception_handler(request, exc)
        response = error_page(request, exc.status_code, str(exc.detail))
        if exc.headers:
            response.headers.update(exc.headers)
        return response

    async def validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        if _wants_json(request):
            return await request_validation_exception_handler(request, exc)
        return error_page(request, 400)

    async def csrf_error(request: Request, exc: Exception) -> Response:
        if _wants_json(request):
            return JSONResponse({"detail": "CSRF token missing or invalid"}, status_code=400)

        return render(
            request,
            "error.html",
            {
                "title": "This form has expired",
                "text": "For your safety, forms only work for a while after the page was "
                "opened. Please go back, reload the page and try again.",
                "status": 400,
            },
            400,
        )

    async def origin_refused(request: Request, exc: Exception) -> Response:
        # A post to /signup from a site she hasn't listed: refused, and the page says so.
        return render(
            request,
            "error.html",
            {
                "title": "This form can't be used from that website",
                "text": "Please sign up on our own page instead.",
                "status": 403,
            },
            403,
        )

    async def rate_limited(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RateLimited)
        response = error_page(request, 429)
        response.headers["Retry-After"] = str(exc.retry_after)
        return response

    async def login_unavailable(request: Request, exc: Exception) -> Response:
        # The admin login's attempt counter can't be reached: refuse (fail closed), and say why.
        response = render(request, "admin/login.html", {"configured": True, "error": str(exc)}, 503)
        response.headers["Retry-After"] = "60"
        return response

    async def server_error(request: Request, exc: Exception) -> Response:
        # The path's first segment only: the rest may hold a signed token.
        area = request.url.path.split("/")[1] if "/" in request.url.path else ""
        log.exception("unhandled error on %s /%s/...", request.method, area)
        response = error_page(request, 500)
        response.headers.update(HEADERS)  # this answer is sent outside SecurityMiddleware
        return response

    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(CSRFError, csrf_error)
    app.add_exception_handler(OriginRefused, origin_refused)
    app.add_exception_handler(RateLimited, rate_limited)
    app.add_exception_handler(LoginUnavailable, login_unavailable)
    app.add_exception_handler(Exception, server_error)


_TOKEN_PATH = re.compile(
    r"^(/(?:confirm|preferences|unsubscribe|admin/(?:setup|invite|reset))/)[^/?\s]+"
)


def redact_path(path: str) -> str:
    """A request path fit for a log: the signed token of a subscriber link replaced by '…'."""
    return _TOKEN_PATH.sub(r"\1…", path)


class RedactTokens(logging.Filter):
    """uvicorn's access log without link tokens: a token is a key to someone's preferences."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str):
            record.args = (*args[:2], redact_path(args[2]), *args[3:])
        return True


def redact_access_log() -> None:
    """Install RedactTokens on uvicorn's access logger once per process."""
    logger = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, RedactTokens) for f in logger.filters):
        logger.addFilter(RedactTokens())
