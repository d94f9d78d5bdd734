"""CSRF by double submit: a random cookie, and a form field that is its HMAC (pages put it in forms)."""

from __future__ import annotations

import hashlib
import hmac
import secrets

from fastapi import Request

from newsletter.core.config import Settings
from newsletter.core.origins import of_url

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


# --- cross-site posts from her own websites (/signup): the origin instead of the cookie ------


class OriginRefused(Exception):
    """A cross-site form came from a site that is not one of hers (or named none)."""


def posted_from(request: Request, allowed: tuple[str, ...]) -> str:
    """The listed origin this form was posted from: the Origin header, else the Referer's
    origin (a browser that sent no Origin); OriginRefused for any other, or none at all.

    A page whose referrer policy is no-referrer posts `Origin: null` and no Referer: refused,
    as a forged post from anywhere would be."""
    sent = request.headers.get("origin")
    if sent is None or sent == "null":
        referer = request.headers.get("referer")
        sent = of_url(referer) if referer else None
    else:
        sent = of_url(sent)
    if sent is None or sent not in allowed:
        raise OriginRefused(sent or "no origin")
    return sent
