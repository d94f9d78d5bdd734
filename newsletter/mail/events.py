"""Provider events (SendGrid's Event Webhook) parsed by lookup tables into our event types (pure)."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from newsletter.core.vocabulary import BOUNCED, COMPLAINED, UNSUBSCRIBED

# Our event types.
PROCESSED, DELIVERED, DEFERRED = "processed", "delivered", "deferred"
BOUNCE, BLOCKED, DROPPED = "bounce", "blocked", "dropped"
COMPLAINT, UNSUBSCRIBE, RESUBSCRIBE = "complaint", "unsubscribe", "resubscribe"
OPEN, CLICK, OTHER = "open", "click", "other"

# SendGrid event name -> our event type ("bounce" is split by its `type` field below).
SENDGRID_EVENTS: dict[str, str] = {
    "processed": PROCESSED,
    "delivered": DELIVERED,
    "deferred": DEFERRED,
    "bounce": BOUNCE,
    "dropped": DROPPED,
    "spamreport": COMPLAINT,
    "unsubscribe": UNSUBSCRIBE,
    "group_unsubscribe": UNSUBSCRIBE,
    "group_resubscribe": RESUBSCRIBE,
    "open": OPEN,
    "click": CLICK,
}

# Event types that turn the subscriber off at once, and the status they get.
SUPPRESSING: dict[str, str] = {
    BOUNCE: BOUNCED,
    DROPPED: BOUNCED,
    COMPLAINT: COMPLAINED,
    UNSUBSCRIBE: UNSUBSCRIBED,
}
# A `dropped` event's reason tells why SendGrid refused to send.
_DROPPED_REASONS = {"spam reporting address": COMPLAINED, "unsubscribed address": UNSUBSCRIBED}


@dataclass(frozen=True)
class Event:
    """One validated provider event."""

    event_id: str
    event_type: str
    email_key: str
    occurred_at: dt.datetime
    delivery_ref: int | None  # our ledger id from custom_args, if it is an article
    message_id: str | None
    detail: str | None
    suppress_as: str | None  # subscriber status to set, or None


def provider_id(sg_message_id: str | None) -> str | None:
    """The request's X-Message-Id (what the ledger stores) from an event's sg_message_id."""
    return sg_message_id.split(".", 1)[0] if sg_message_id else None


class MalformedEvent(ValueError):
    pass


# Control characters (the database refuses NUL) and lone surrogates (JSON's "\ud800" escapes:
# not encodable as UTF-8): never stored, never used as keys.
_UNSTORABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def _text(value: object, limit: int) -> str | None:
    if value is None:
        return None
    text = " ".join(_UNSTORABLE.sub(" ", str(value)[: limit * 4]).split())
    return text[:limit] or None


def _clean(value: object, limit: int) -> bool:
    """A non-empty string of at most `limit` characters that can be stored as it is."""
    return isinstance(value, str) and 0 < len(value) <= limit and _UNSTORABLE.search(value) is None


def parse_sendgrid(raw: Mapping[str, Any]) -> Event:
    """Validate one SendGrid event object; MalformedEvent says what is wrong (no address in it)."""
    if not isinstance(raw, Mapping):
        raise MalformedEvent("not an object")
    name = raw.get("event")
    if not _clean(name, 100):
        raise MalformedEvent("missing or invalid 'event'")
    assert isinstance(name, str)
    event_id = raw.get("sg_event_id")
    if not _clean(event_id, 128):
        raise MalformedEvent("missing or invalid 'sg_event_id'")
    assert isinstance(event_id, str)
    stamp = raw.get("timestamp")
    if isinstance(stamp, bool) or not isinstance(stamp, int | float | str):
        raise MalformedEvent("missing or invalid 'timestamp'")
    try:
        occurred = dt.datetime.fromtimestamp(float(stamp), dt.UTC)
    except (ValueError, OverflowError, OSError):
        raise MalformedEvent("missing or invalid 'timestamp'") from None
    email = raw.get("email")
    if not _clean(email, 320) or "@" not in str(email):
        raise MalformedEvent("missing or invalid 'email'")
    assert isinstance(email, str)

    event_type = SENDGRID_EVENTS.get(name, OTHER)
    if event_type == BOUNCE and raw.get("type") == "blocked":
        event_type = BLOCKED  # reputation/content block: recorded only
    suppress_as = SUPPRESSING.get(event_type)
    if event_type == DROPPED:
        reason = str(raw.get("reason") or "").strip().lower()
        suppress_as = _DROPPED_REASONS.get(reason, BOUNCED)

    ref = raw.get("delivery_id")  # custom_args arrive flattened
    delivery_ref = None
    if (
        isinstance(ref, str | int)
        and not isinstance(ref, bool)
        and str(ref).isascii()
        and str(ref).isdecimal()
        and len(str(ref)) <= 19
        and raw.get("kind", "article") == "article"
    ):
        delivery_ref = int(ref)
        if delivery_ref > 2**62:
            delivery_ref = None
    message_id = raw.get("sg_message_id")
    detail = raw.get("reason") or raw.get("response") or raw.get("type")
    if event_type == OTHER:
        detail = f"{name}: {detail}" if detail else name
    return Event(
        event_id=event_id,
        event_type=event_type,
        email_key=email.strip().lower(),
        occurred_at=occurred,
        delivery_ref=delivery_ref,
        message_id=_text(message_id, 200) if isinstance(message_id, str) else None,
        detail=_text(detail, 1000),
        suppress_as=suppress_as,
    )
