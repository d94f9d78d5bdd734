"""The exact RFC 5322 message (multipart/alternative, text then HTML) the SMTP and outbox backends send.

`require_practice` is the one check of what every message takes from the practice's settings
(sender, reply-to, names, postal address): every backend runs it before a batch, so a mistake in
the settings halts sending (SendingHalted, kind PRACTICE) instead of failing each reader.
"""

from __future__ import annotations

import datetime as dt
import secrets
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime

from newsletter.core import identity
from newsletter.core.config import ENV_PREFIX, Settings
from newsletter.mail.message import PRACTICE, Message, Recipient, SendingHalted
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
    """A header address (identity.header_address's rule); the display name is one line. The
    error never repeats the address (a reader's ends up in a delivery's reason and the log)."""
    try:
        checked = identity.header_address(email)
    except ValueError:
        raise ValueError("not a single email address") from None
    local, _, domain = checked.rpartition("@")
    return Address(display_name=one_line(name or ""), username=local, domain=domain)


# (setting, what the therapist calls it, its rule): what every message takes from the practice.
PRACTICE_CHECKS = (
    ("from_email", "sender address", identity.header_address),
    ("reply_to", "reply-to address", identity.header_address),
    ("from_name", "sender name", identity.one_line),
    ("practice_name", "practice name", identity.one_line),
    ("postal_address", "postal address", identity.one_line),
)


def practice_problem(settings: Settings) -> str | None:
    """Why no message can be built from the practice's settings (pass the effective ones), or
    None. Names the setting and where to fix it, never a reader."""
    for name, label, rule in PRACTICE_CHECKS:
        value = getattr(settings, name)
        if value is None:
            continue
        try:
            rule(value)
        except ValueError as exc:
            where = f"{ENV_PREFIX}{name.upper()} or the Settings page"
            return f"the practice's {label} ({where}) can't be used in an email: {exc}"
    return None


def require_practice(settings: Settings) -> None:
    """Raise SendingHalted (kind PRACTICE, fingerprinted with the practice's values) when the
    practice's settings can't make a message: nothing is sent until they change."""
    problem = practice_problem(settings)
    if problem is not None:
        raise SendingHalted(
            problem, fingerprint=identity.practice_fingerprint(settings), kind=PRACTICE
        )


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
    for item in message.attachments:
        main, _, sub = item.content_type.partition("/")
        mail.add_attachment(item.content, maintype=main, subtype=sub, filename=item.filename)
    return mail


def to_bytes(mail: EmailMessage) -> bytes:
    """The wire form (CRLF line endings) — what SMTP sends and what an outbox .eml holds."""
    return mail.as_bytes(policy=POLICY)
