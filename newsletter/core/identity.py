"""Identity rules: one-way keys for secrets (API key fingerprints)."""

from __future__ import annotations

import hashlib

from newsletter.core.config import Settings


def fingerprint(secret: str) -> str:
    """A short one-way hash of an API key, to notice when the operator changed it."""
    return hashlib.sha256(secret.encode()).hexdigest()[:16]


def configured_fingerprint(settings: Settings) -> str | None:
    """Fingerprint of the SendGrid key configured now (None if not SendGrid or no key)."""
    key = settings.sendgrid_api_key
    if settings.mail_backend != "sendgrid" or key is None or not key.get_secret_value():
        return None
    return fingerprint(key.get_secret_value())
