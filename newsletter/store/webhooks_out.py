"""The outgoing-webhook outbox: endpoints, events recorded with the change that caused them, deliveries.

An event is written here in the same transaction as the change (signup, confirmation,
preferences, unsubscribe, bounce, complaint, a series finished): one delivery row per endpoint
that hears it, its JSON body fixed then (the address only for an endpoint that includes
addresses). Sending is services.webhooks_out's, through the Celery sweep; nothing here talks
to the network.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, or_, select, update
from sqlalchemy.orm import Session

from newsletter.store.models import ERASED, Series, Subscriber, WebhookDelivery, WebhookEndpoint

SUBSCRIBED = "subscribed"
CONFIRMED = "confirmed"
PREFERENCES_CHANGED = "preferences_changed"
UNSUBSCRIBED_EVENT = "unsubscribed"
BOUNCED_EVENT = "bounced"
COMPLAINED_EVENT = "complained"
SERIES_FINISHED = "series_finished"
TEST = "test"
# The events she can choose, in the order the settings page lists them, with their words.
EVENTS: dict[str, str] = {
    SUBSCRIBED: "Someone signed up (not confirmed yet)",
    CONFIRMED: "Someone confirmed",
    PREFERENCES_CHANGED: "A reader changed their preferences",
    UNSUBSCRIBED_EVENT: "A reader unsubscribed",
    BOUNCED_EVENT: "An address bounced",
    COMPLAINED_EVENT: "A reader marked an email as spam",
    SERIES_FINISHED: "A reader finished a series",
}
# A reader's status after a provider event -> the event it is.
BY_STATUS = {
    "bounced": BOUNCED_EVENT,
    "complained": COMPLAINED_EVENT,
    "unsubscribed": UNSUBSCRIBED_EVENT,  # an unsubscribe the provider reported
}

PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"
_ENDPOINTS_KEY = "webhooks_out.endpoints"  # session.info: the endpoints, read once a transaction


@dataclass(frozen=True)
class Endpoint:
    id: int
    url: str
    events: tuple[str, ...]
    include_email: bool
    sealed_secret: str
    created_at: dt.datetime


@dataclass(frozen=True)
class OutgoingDelivery:
    id: int
    endpoint_id: int
    event: str
    body: str
    status: str
    attempts: int
    next_try_at: dt.datetime
    last_result: str | None
    created_at: dt.datetime
    finished_at: dt.datetime | None


def _endpoint(row: WebhookEndpoint) -> Endpoint:
    return Endpoint(
        row.id, row.url, tuple(row.events), row.include_email, row.secret, row.created_at
    )


def _delivery(row: WebhookDelivery) -> OutgoingDelivery:
    return OutgoingDelivery(
        row.id, row.endpoint_id, row.event, row.body, row.status, row.attempts,
        row.next_try_at, row.last_result, row.created_at, row.finished_at,
    )  # fmt: skip


# --- endpoints -----------------------------------------------------------------------------


def endpoints(session: Session) -> list[Endpoint]:
    return [_endpoint(r) for r in session.scalars(select(WebhookEndpoint).order_by("id"))]


def endpoint(session: Session, endpoint_id: int) -> Endpoint | None:
    row = session.get(WebhookEndpoint, endpoint_id)
    return None if row is None else _endpoint(row)


def add_endpoint(
    session: Session, url: str, events: Sequence[str], include_email: bool, sealed_secret: str
) -> int:
    row = WebhookEndpoint(
        url=url, events=list(events), include_email=include_email, secret=sealed_secret
    )
    session.add(row)
    session.flush()
    session.info.pop(_ENDPOINTS_KEY, None)
    return row.id


def remove_endpoint(session: Session, endpoint_id: int) -> bool:
    session.execute(delete(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint_id))
    gone = session.execute(delete(WebhookEndpoint).where(WebhookEndpoint.id == endpoint_id))
    session.info.pop(_ENDPOINTS_KEY, None)
    return bool(getattr(gone, "rowcount", 0))


# --- recording events ----------------------------------------------------------------------


def listening(session: Session, event: str) -> list[Endpoint]:
    """The endpoints that hear `event` (read once a transaction, however many events)."""
    if _ENDPOINTS_KEY not in session.info:
        session.info[_ENDPOINTS_KEY] = endpoints(session)
    return [e for e in session.info[_ENDPOINTS_KEY] if event in e.events or event == TEST]


def body(
    event: str,
    moment: dt.datetime,
    reader_id: str | None,
    email: str | None,
    extra: dict[str, Any] | None = None,
) -> str:
    """The JSON an endpoint receives: event, time, the reader's public id, the address only
    when given (`email`), and the event's own fields (`series`)."""
    reader: dict[str, Any] = {"id": reader_id}
    if email is not None:
        reader["email"] = email
    payload: dict[str, Any] = {
        "id": uuid.uuid4().hex,
        "event": event,
        "time": moment.astimezone(dt.UTC).isoformat().replace("+00:00", "Z"),
        "reader": reader,
        **(extra or {}),
    }
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False)


def record(
    session: Session,
    event: str,
    subscriber: Subscriber,
    now: dt.datetime,
    *,
    series_id: int | None = None,
) -> int:
    """`event` happened to `subscriber`: one pending delivery per endpoint that hears it, in
    this transaction. An erased reader's address is never included. Returns rows written."""
    targets = listening(session, event)
    if not targets:
        return 0
    extra: dict[str, Any] = {}
    if series_id is not None:
        extra["series"] = session.scalar(select(Series.slug).where(Series.id == series_id))
    email = None if subscriber.status == ERASED else subscriber.email
    for target in targets:
        session.add(
            WebhookDelivery(
                endpoint_id=target.id,
                event=event,
                reader_id=subscriber.public_id,
                subscriber_id=subscriber.id,
                body=body(event, now, subscriber.public_id, email if target.include_email else None, extra),
                status=PENDING,
                attempts=0,
                next_try_at=now,
                created_at=now,
            )
        )  # fmt: skip
    session.flush()
    return len(targets)


def record_ids(session: Session, statuses: dict[int, str], now: dt.datetime) -> int:
    """Provider events turned these readers (id -> new status) bounced, complained or
    unsubscribed: one event each for the endpoints that hear it."""
    ids = [i for i, status in statuses.items() if status in BY_STATUS]
    if not ids or not any(listening(session, e) for e in set(BY_STATUS.values())):
        return 0
    written = 0
    for row in session.scalars(select(Subscriber).where(Subscriber.id.in_(ids))):
        written += record(session, BY_STATUS[statuses[row.id]], row, now)
    return written


def record_test(session: Session, endpoint_id: int, now: dt.datetime) -> int:
    """A test event for one endpoint (the settings page's button); its delivery id."""
    row = WebhookDelivery(
        endpoint_id=endpoint_id,
        event=TEST,
        reader_id=None,
        body=body(TEST, now, None, None),
        status=PENDING,
        attempts=0,
        next_try_at=now,
        created_at=now,
    )
    session.add(row)
    session.flush()
    return row.id


def forget(session: Session, subscriber_id: int) -> int:
    """An erased reader: the address leaves every body kept here, so deliveries not yet made
    (later tries too) carry none and the log keeps none. Returns the bodies rewritten."""
    changed = 0
    rows = session.scalars(
        select(WebhookDelivery).where(WebhookDelivery.subscriber_id == subscriber_id)
    )
    for row in rows:
        row.subscriber_id = None
        payload = json.loads(row.body)
        if payload.get("reader", {}).pop("email", None) is not None:
            row.body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
            changed += 1
    session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.subscriber_id == subscriber_id)
        .values(subscriber_id=None),
        execution_options={"synchronize_session": False},
    )
    session.flush()
    return changed


# --- delivering ----------------------------------------------------------------------------


def claim_due(
    session: Session, now: dt.datetime, lease: dt.timedelta, limit: int = 500
) -> list[int]:
    """Pending deliveries due at `now` and not handed to a worker within `lease`: marked
    handed over now; their ids."""
    ids = list(
        session.scalars(
            select(WebhookDelivery.id)
            .where(
                WebhookDelivery.status == PENDING,
                WebhookDelivery.next_try_at <= now,
                or_(WebhookDelivery.queued_at.is_(None), WebhookDelivery.queued_at < now - lease),
            )
            .order_by(WebhookDelivery.next_try_at, WebhookDelivery.id)
            .limit(limit)
        )
    )
    if ids:
        session.execute(
            update(WebhookDelivery).where(WebhookDelivery.id.in_(ids)).values(queued_at=now),
            execution_options={"synchronize_session": False},
        )
    return ids


def delivery(session: Session, delivery_id: int) -> OutgoingDelivery | None:
    row = session.get(WebhookDelivery, delivery_id)
    return None if row is None else _delivery(row)


def attempted(
    session: Session,
    delivery_id: int,
    now: dt.datetime,
    result: str,
    *,
    delivered: bool,
    next_try: dt.datetime | None,
) -> None:
    """One attempt made: delivered, to be tried again at `next_try`, or given up (None)."""
    row = session.get(WebhookDelivery, delivery_id)
    if row is None:
        return
    row.attempts += 1
    row.last_result = result[:200]
    row.queued_at = None
    if delivered or next_try is None:
        row.status = DELIVERED if delivered else FAILED
        row.finished_at = now
    else:
        row.next_try_at = next_try
    session.flush()


def log(session: Session, endpoint_id: int, limit: int = 50) -> list[OutgoingDelivery]:
    """An endpoint's deliveries, newest first."""
    rows = session.scalars(
        select(WebhookDelivery)
        .where(WebhookDelivery.endpoint_id == endpoint_id)
        .order_by(WebhookDelivery.id.desc())
        .limit(limit)
    )
    return [_delivery(r) for r in rows]
