"""Backend choice by name: one module per provider, each exposing `make_backend(settings)`.

A new provider is one module plus one line in BACKENDS. Each provider module is imported only
when it is chosen (the SendGrid client alone costs a noticeable part of `newsletter` start-up).
"""

from __future__ import annotations

from collections.abc import Callable

from newsletter.core.config import Settings
from newsletter.mail.message import Backend


def _outbox(settings: Settings) -> Backend:
    from newsletter.mail.backends import outbox  # lazy: start-up speed

    return outbox.make_backend(settings)


def _smtp(settings: Settings) -> Backend:
    from newsletter.mail.backends import smtp  # lazy: start-up speed

    return smtp.make_backend(settings)


def _sendgrid(settings: Settings) -> Backend:
    from newsletter.mail.backends import sendgrid  # lazy: start-up speed

    return sendgrid.make_backend(settings)


# NEWSLETTER_MAIL_BACKEND value -> the provider's factory.
BACKENDS: dict[str, Callable[[Settings], Backend]] = {
    "outbox": _outbox,
    "smtp": _smtp,
    "sendgrid": _sendgrid,
}


def get_backend(settings: Settings, name: str | None = None) -> Backend:
    """The backend named by settings.mail_backend (or `name`), sending as `settings` say: the
    effective ones the entry point made (store.practice.effective_settings), or
    `settings.environment` for the server's own values. mail/ never reads the saved rows."""
    chosen = name or settings.mail_backend
    try:
        make = BACKENDS[chosen]
    except KeyError:
        raise ValueError(
            f"unknown mail backend {chosen!r} (choose one of {', '.join(BACKENDS)})"
        ) from None
    return make(settings)
