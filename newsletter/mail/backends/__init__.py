"""Backend choice by name: one module per provider, each exposing `make_backend(settings)`."""

from __future__ import annotations

import importlib

from newsletter.core.config import Settings
from newsletter.mail.message import Backend

# NEWSLETTER_MAIL_BACKEND value -> module exposing `make_backend(settings) -> Backend`.
BACKENDS: dict[str, str] = {
    "outbox": "newsletter.mail.backends.outbox",
    "smtp": "newsletter.mail.backends.smtp",
    "sendgrid": "newsletter.mail.backends.sendgrid",
}


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
