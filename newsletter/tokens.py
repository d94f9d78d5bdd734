"""Signed, expiring tokens for confirm / preferences / unsubscribe links (no id or address in clear)."""

from __future__ import annotations

import functools

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

# Purpose -> max age in seconds (None: never expires; unsubscribe links must keep working).
MAX_AGE: dict[str, int | None] = {
    "confirm": 7 * 24 * 3600,
    "preferences": None,
    "unsubscribe": None,
}


class TokenError(Exception):
    """A token is tampered with, for another purpose, or expired (`expired` tells which)."""

    def __init__(self, message: str, *, expired: bool = False) -> None:
        super().__init__(message)
        self.expired = expired


@functools.lru_cache(maxsize=16)  # a send signs two links per recipient: build each once
def _serializer(secret: str, purpose: str) -> URLSafeTimedSerializer:
    if purpose not in MAX_AGE:
        raise ValueError(f"unknown token purpose {purpose!r}")
    return URLSafeTimedSerializer(secret, salt=f"newsletter.{purpose}")


def make_token(secret: str, purpose: str, public_id: str) -> str:
    """Sign a subscriber's random public id for one purpose."""
    return str(_serializer(secret, purpose).dumps(public_id))


def read_token(secret: str, purpose: str, token: str) -> str:
    """The public id inside a valid token; TokenError otherwise."""
    try:
        value = _serializer(secret, purpose).loads(token, max_age=MAX_AGE[purpose])
    except SignatureExpired:
        raise TokenError("this link has expired", expired=True) from None
    except BadSignature:
        raise TokenError("this link is not valid") from None
    if not isinstance(value, str):
        raise TokenError("this link is not valid")
    return value


def link(public_url: str, secret: str, purpose: str, public_id: str) -> str:
    """The full URL of a signed link, e.g. https://host/unsubscribe/<token>."""
    return f"{public_url.rstrip('/')}/{purpose}/{make_token(secret, purpose, public_id)}"
