"""Backend choice by name (one module per provider) and the shared 'sending halted' switch."""

from __future__ import annotations

import datetime as dt
import hashlib
import importlib
import json
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from newsletter.core.config import Settings
from newsletter.mail.message import Backend
from newsletter.store.models import AppState

# NEWSLETTER_MAIL_BACKEND value -> module exposing `make_backend(settings) -> Backend`.
BACKENDS: dict[str, str] = {
    "outbox": "newsletter.mail.backends.outbox",
    "smtp": "newsletter.mail.backends.smtp",
    "sendgrid": "newsletter.mail.backends.sendgrid",
}

HALT_KEY = "sending_halted"


def get_backend(settings: Settings, name: str | None = None) -> Backend:
    """The backend named by settings.mail_backend (or `name`)."""
    chosen = name or settings.mail_backend
    try:
        module = importlib.import_module(BACKENDS[chosen])
    except KeyError:
        raise ValueError(
            f"unknown mail backend {chosen!r} (choose one of {', '.join(BACKENDS)})"
        ) from None
    backend: Backend = module.make_backend(settings)
    return backend


@dataclass(frozen=True)
class Halt:
    """Why sending stopped, when, and which credentials were refused (a hash, never the key)."""

    reason: str
    at: dt.datetime
    fingerprint: str | None


def fingerprint(secret: str) -> str:
    """A short one-way hash of an API key, to notice when the operator changed it."""
    return hashlib.sha256(secret.encode()).hexdigest()[:16]


def _current_fingerprint(settings: Settings | None) -> str | None:
    """Fingerprint of the SendGrid key configured now (None if unknown or not SendGrid)."""
    if settings is None:
        from newsletter.core.config import ConfigError, get_settings

        try:
            settings = get_settings()
        except ConfigError:
            return None
    key = settings.sendgrid_api_key
    if settings.mail_backend != "sendgrid" or key is None or not key.get_secret_value():
        return None
    return fingerprint(key.get_secret_value())


def recorded_halt(session: Session) -> Halt | None:
    """The halt row as stored, whatever the configured key is now."""
    row = session.get(AppState, HALT_KEY)
    if row is None:
        return None
    try:
        data = json.loads(row.value)
        return Halt(
            reason=str(data["reason"]),
            at=dt.datetime.fromisoformat(data["at"]),
            fingerprint=data.get("fingerprint"),
        )
    except (ValueError, KeyError, TypeError):
        return Halt(reason=row.value, at=row.updated_at, fingerprint=None)


def halted(session: Session, settings: Settings | None = None) -> Halt | None:
    """The current halt, or None while sending is allowed.

    A halt recorded for one SendGrid API key no longer applies once the configured key is a
    different one (the operator fixed it). `settings` defaults to the process settings.
    """
    current = recorded_halt(session)
    if current is None or current.fingerprint is None:
        return current
    now_fp = _current_fingerprint(settings)
    if now_fp is not None and now_fp != current.fingerprint:
        return None
    return current


def halt(session: Session, reason: str, key_fingerprint: str | None = None) -> None:
    """Stop all sending (idempotent; keeps an earlier fingerprint when none is given)."""
    current = recorded_halt(session)
    if key_fingerprint is None and current is not None:
        key_fingerprint = current.fingerprint
    value = json.dumps(
        {
            "reason": reason[:500],
            "at": dt.datetime.now(dt.UTC).isoformat(),
            "fingerprint": key_fingerprint,
        }
    )
    row = session.get(AppState, HALT_KEY)
    if row is None:
        session.add(AppState(key=HALT_KEY, value=value))
    else:
        row.value = value
    session.flush()


def resume(session: Session) -> bool:
    """Allow sending again; True when a halt was lifted."""
    row = session.scalar(select(AppState).where(AppState.key == HALT_KEY))
    if row is None:
        return False
    session.delete(row)
    session.flush()
    return True
