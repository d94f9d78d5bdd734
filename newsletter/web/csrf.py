"""CSRF by double submit: a random cookie, and a form field that is its HMAC (pages put it in forms)."""

from __future__ import annotations

import hashlib
import hmac
import secrets

from fastapi import Request

from newsletter.core.config import Settings

CSRF_COOKIE = "nl_csrf"
CSRF_FIELD = "csrf_token"


class CSRFError(Exception):
    """A state-changing form came without a valid CSRF token."""


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _sign(settings: Settings, value: str) -> str:
    return hmac.new(settings.secret.encode(), f"csrf:{value}".encode(), hashlib.sha256).hexdigest()


def csrf_token(request: Request) -> str:
    """The token for forms on this page (sets the cookie on the response when new)."""
    value = request.cookies.get(CSRF_COOKIE) or ""
    if len(value) < 16:
        value = getattr(request.state, "csrf_new", None) or secrets.token_urlsafe(24)
        request.state.csrf_new = value
    return _sign(_settings(request), value)


def verify_csrf(request: Request, submitted: object) -> None:
    """Raise CSRFError unless `submitted` matches this browser's cookie."""
    value = request.cookies.get(CSRF_COOKIE) or ""
    if not isinstance(submitted, str) or len(value) < 16:
        raise CSRFError("missing CSRF token")
    if not hmac.compare_digest(_sign(_settings(request), value), submitted):
        raise CSRFError("bad CSRF token")
