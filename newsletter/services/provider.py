"""Connecting the mail provider from Settings: SendGrid (key, scopes, signed Event Webhook) or SMTP, a test, disconnecting.

What is connected is kept in store.provider (secrets sealed with the secret key) and reaches every
backend and the webhook's signature check through the effective settings; a provider variable set
in the environment wins, and then nothing here may change it (the page names the variables).
"""

from __future__ import annotations

import datetime as dt
import html as html_text
import smtplib
import ssl
from dataclasses import dataclass
from urllib.parse import quote

from sendgrid.helpers.eventwebhook import EventWebhook

from newsletter.core.config import Settings
from newsletter.mail.backends import smtp as smtp_backend
from newsletter.mail.message import TEST, Message
from newsletter.services import mailing
from newsletter.services.provider_sendgrid import (
    SendGridRefused,
    configure_webhook,
    missing_scopes,
    scopes,
)
from newsletter.store import practice, provider
from newsletter.store.db import session_scope

WEBHOOK_PATH = "/webhooks/sendgrid"  # web/webhooks.py's route (a test holds them equal)
TEST_MODE = "Not sent yet — test mode"
LABELS = {"outbox": TEST_MODE, "sendgrid": "SendGrid", "smtp": "SMTP"}
SECURITY = {"starttls": "smtp", "tls": "smtps"}  # the page's choice -> the URL scheme


class NotConnected(Exception):
    """Connecting did not happen; the message is a sentence for the therapist."""


@dataclass(frozen=True)
class Status:
    """What the page shows about sending."""

    backend: str
    label: str
    fixed: tuple[str, ...]  # provider variables the environment sets (they win)
    webhook_url: str
    signed: bool  # a webhook public key is configured (signed events only)
    webhook_id: str | None
    connected_at: str | None
    smtp_host: str | None
    unreadable: bool  # rows are saved that this secret key cannot open


@dataclass(frozen=True)
class Connected:
    """A provider now connected (for the page's message)."""

    name: str
    detail: str


def webhook_url(settings: Settings) -> str:
    return settings.public_url + WEBHOOK_PATH


def status(settings: Settings) -> Status:
    with session_scope(settings.database_url) as db:
        stored = provider.rows(db)
    secret = settings.environment.secret if stored else ""
    values = provider.opened(stored, secret) if stored else {}
    smtp_host = None
    if settings.mail_backend == "smtp" and settings.smtp_url:
        smtp_host = smtp_backend.parse_url(settings.smtp_url).host
    return Status(
        backend=settings.mail_backend,
        label=LABELS.get(settings.mail_backend, settings.mail_backend),
        fixed=tuple(provider.fixed_by_environment(settings)),
        webhook_url=webhook_url(settings),
        signed=bool(settings.sendgrid_webhook_public_key),
        webhook_id=values.get("provider_webhook_id"),
        connected_at=values.get("provider_connected_at"),
        smtp_host=smtp_host,
        unreadable=provider.unreadable(stored, secret) if stored else False,
    )


def _refuse_when_fixed(settings: Settings) -> None:
    fixed = provider.fixed_by_environment(settings)
    if fixed:
        raise NotConnected(
            f"The server sets {', '.join(fixed)}: mail is sent as the server says. Whoever runs "
            "the server can remove the variable to connect from this page."
        )


def _save(settings: Settings, values: dict[str, str]) -> None:
    values = {**values, "provider_connected_at": dt.datetime.now(dt.UTC).isoformat()}
    with session_scope(settings.database_url) as db:
        provider.replace(db, values, settings.environment.secret)
    practice.forget()  # this process sees it at once, the others within practice.CACHE_SECONDS


def _api_key(raw: str) -> str:
    key = raw.strip()
    if not key:
        raise NotConnected("Paste the API key SendGrid showed when you created it.")
    if len(key) > 200 or any(c.isspace() or not c.isprintable() for c in key):
        raise NotConnected("That is not an API key: paste only the key (it starts with SG.).")
    return key


def connect_sendgrid(settings: Settings, raw_key: str) -> Connected:
    """Check the key's permissions, set up the signed Event Webhook for this site, store it all."""
    _refuse_when_fixed(settings)
    key = _api_key(raw_key)
    try:
        lacking = missing_scopes(scopes(settings, key))
        if lacking:
            raise NotConnected(
                "This key lacks permissions: " + "; ".join(lacking) + ". Edit the key at "
                "SendGrid (Settings > API Keys) or create one with them, then paste it again."
            )
        hook = configure_webhook(settings, key, webhook_url(settings))
    except SendGridRefused as exc:
        raise NotConnected(str(exc)) from None
    try:
        EventWebhook(hook.public_key)  # the check web/webhooks.py will run on every post
    except Exception:
        raise NotConnected("SendGrid's signing key could not be read; try again.") from None
    _save(
        settings,
        {
            "mail_backend": "sendgrid",
            "sendgrid_api_key": key,
            "sendgrid_webhook_public_key": hook.public_key,
            "provider_webhook_id": hook.id,
        },
    )
    return Connected("SendGrid", hook.id)


def smtp_url(host: str, port: str, security: str, user: str, password: str) -> str:
    """The NEWSLETTER_SMTP_URL these form fields make (user and password quoted)."""
    host = host.strip()
    if not host or any(c in host for c in "/@:?# ") or not host.isprintable():
        raise NotConnected("Give the SMTP server's host name, like smtp.example.net.")
    if not port.strip().isdecimal() or not 0 < int(port) < 65536:
        raise NotConnected("The port is a number, usually 587 (or 465 for TLS from the start).")
    scheme = SECURITY.get(security)
    if scheme is None:
        raise NotConnected("Choose how the connection is secured.")
    login = ""
    if user.strip():
        login = f"{quote(user.strip(), safe='')}:{quote(password, safe='')}@"
    return f"{scheme}://{login}{host}:{int(port)}"


def connect_smtp(
    settings: Settings, host: str, port: str, security: str, user: str, password: str
) -> Connected:
    """Connect and sign in to the SMTP server as a send would, then store it (sealed)."""
    _refuse_when_fixed(settings)
    url = smtp_url(host, port, security, user, password)
    trial = settings.model_copy(update={"mail_backend": "smtp", "smtp_url": url})
    try:
        smtp_backend.make_backend(trial).probe()
    except smtplib.SMTPAuthenticationError:
        raise NotConnected("The SMTP server refused the user name or password.") from None
    except (OSError, smtplib.SMTPException, ssl.SSLError) as exc:
        raise NotConnected(f"Could not connect to {host.strip()}:{port.strip()} ({exc}).") from None
    _save(settings, {"mail_backend": "smtp", "smtp_url": url})
    return Connected("SMTP", host.strip())


def disconnect(settings: Settings) -> None:
    """Forget the provider: mail waits in test mode again (the outbox)."""
    _refuse_when_fixed(settings)
    with session_scope(settings.database_url) as db:
        provider.replace(db, {}, settings.environment.secret)
    practice.forget()


def test_message(settings: Settings) -> Message:
    """A short email saying sending works (mailing.send_test marks it [Test])."""
    practice_name = settings.practice
    text = (
        f"This is a test from {practice_name}'s newsletter. If you are reading it, email "
        f"reaches you through {LABELS.get(settings.mail_backend, settings.mail_backend)}.\n"
    )
    html = f"<p>{html_text.escape(text.strip())}</p>"
    return Message(kind=TEST, subject=f"Sending from {practice_name} works", html=html, text=text)


def send_test(settings: Settings, to: str) -> mailing.TestSend:
    """Send the test email to `to` through what is connected; the dashboard ticks its step."""
    result = mailing.send_test(settings, to, test_message(settings))
    if result.ok:
        with session_scope(settings.database_url) as db:
            practice.note_test_sent(db)
    return result
