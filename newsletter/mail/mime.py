"""The exact RFC 5322 message (multipart/alternative, text then HTML) the SMTP and outbox backends send."""

from __future__ import annotations

import datetime as dt
import secrets
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime

from newsletter.core.config import Settings
from newsletter.mail.message import Message, Recipient
from newsletter.mail.render import personalise

# CRLF line endings, RFC 2047 for non-ASCII; raises on CR/LF smuggled into a header. Lines may run
# to RFC 5322's hard limit of 998: with a 78-column limit the email package RFC 2047-encodes a long
# unbroken header value (a List-Unsubscribe URL with its token), which mail clients can't use.
POLICY = policy.SMTP.clone(max_line_length=998)
ONE_CLICK = "List-Unsubscribe=One-Click"


def one_line(value: str) -> str:
    """Collapse every run of whitespace (CR and LF included) to one space: a header can't be split."""
    return " ".join(value.split())


def address(name: str | None, email: str) -> Address:
    """A header address; the display name is one line and the address may not carry CR/LF or brackets."""
    email = email.strip()
    if not email or any(c in email for c in "\r\n<>,; \t"):
        raise ValueError("not a single email address")
    local, _, domain = email.rpartition("@")
    if not local or not domain:
        raise ValueError("not a single email address")
    return Address(display_name=one_line(name or ""), username=local, domain=domain)


def message_id(settings: Settings, delivery_id: str) -> str:
    """A unique Message-ID under the sender's domain (no recipient data in it)."""
    domain = settings.from_email.rpartition("@")[2] or "localhost"
    safe = "".join(c for c in delivery_id if c.isalnum() or c in "-_")[:64] or "m"
    return f"<{safe}.{secrets.token_hex(8)}@{domain}>"


def build(
    settings: Settings,
    message: Message,
    recipient: Recipient,
    *,
    now: dt.datetime | None = None,
    msgid: str | None = None,
) -> EmailMessage:
    """One recipient's message: personal values filled, the unsubscribe headers set."""
    values = recipient.values
    mail = EmailMessage(policy=POLICY)
    mail["From"] = address(settings.from_name, settings.from_email)
    mail["To"] = address(recipient.name, recipient.email)
    mail["Reply-To"] = address(None, settings.reply_to)
    mail["Subject"] = one_line(personalise(message.subject, values))
    mail["Date"] = format_datetime(now or dt.datetime.now(dt.UTC))
    mail["Message-ID"] = msgid or message_id(settings, recipient.delivery_id)
    unsubscribe = one_line(recipient.unsubscribe_url)
    if unsubscribe:
        if any(c in unsubscribe for c in "<>"):
            raise ValueError("unsubscribe URL may not contain angle brackets")
        mail["List-Unsubscribe"] = f"<{unsubscribe}>"
        mail["List-Unsubscribe-Post"] = ONE_CLICK
    mail.set_content(
        personalise(message.text, values), subtype="plain", charset="utf-8", cte="quoted-printable"
    )
    mail.add_alternative(
        personalise(message.html, values), subtype="html", charset="utf-8", cte="quoted-printable"
    )
    return mail


def to_bytes(mail: EmailMessage) -> bytes:
    """The wire form (CRLF line endings) — what SMTP sends and what an outbox .eml holds."""
    return mail.as_bytes(policy=POLICY)
