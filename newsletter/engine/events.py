"""Provider events (SendGrid Event Webhook) -> stored once, ledger confirmed, subscribers suppressed."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from newsletter.core.config import Settings
from newsletter.engine.reconcile import confirm_sent
from newsletter.mail.events import (
    DELIVERED,
    PROCESSED,
    Event,
    MalformedEvent,
    parse_sendgrid,
    provider_id,
)
from newsletter.queue.dueset import RedisQueue
from newsletter.store import ledger as ledger_sql
from newsletter.store import webhook_posts, webhooks_out
from newsletter.store.db import session_scope
from newsletter.store.ledger import QueueChange
from newsletter.store.models import (
    ACTIVE,
    BOUNCED,
    CANCELLED,
    CLAIMED,
    COMPLAINED,
    FINISHED,
    PENDING,
    RETRY,
    SENT,
    UNSUBSCRIBED,
    Enrollment,
    ProviderEvent,
    Subscriber,
)

log = logging.getLogger(__name__)

PROVIDER = "sendgrid"
CHUNK = 500  # rows per bulk statement / IN list

# When one batch holds several reasons for one person, the strongest wins.
_RANK = {UNSUBSCRIBED: 1, BOUNCED: 2, COMPLAINED: 3}


@dataclass
class Report:
    received: int = 0
    stored: int = 0
    duplicates: int = 0
    confirmed: int = 0
    suppressed: int = 0
    malformed: list[str] = field(default_factory=list)
    # the newest hand-over among the rows its new events named (engine.absence): how far the
    # provider's reports have got
    newest_handed: dt.datetime | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "received": self.received,
            "stored": self.stored,
            "duplicates": self.duplicates,
            "confirmed": self.confirmed,
            "suppressed": self.suppressed,
            "malformed": self.malformed,
        }


def _chunks(items: Sequence[Any], size: int = CHUNK) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _insert_new(session: Session, rows: list[dict[str, Any]]) -> set[str]:
    """INSERT … ON CONFLICT DO NOTHING in bulk; the event ids that were new."""
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    new: set[str] = set()
    for part in _chunks(rows):
        stmt = (
            insert(ProviderEvent)
            .values(list(part))
            .on_conflict_do_nothing(index_elements=["provider", "event_id"])
            .returning(ProviderEvent.event_id)
        )
        new.update(session.scalars(stmt))
    return new


def store(
    session: Session, events: Sequence[Event], now: dt.datetime
) -> tuple[Report, list[QueueChange]]:
    """Store new events and apply their effects; returns the report and Redis queue changes."""
    report = Report()
    unique: dict[str, Event] = {}
    for event in events:
        unique.setdefault(event.event_id, event)

    refs = sorted({e.delivery_ref for e in unique.values() if e.delivery_ref is not None})
    ledger: dict[int, int | None] = {}
    handed: set[int] = set()  # given to the provider, outcome not recorded (a crash between)
    retrying: set[int] = set()  # a timeout or 5xx said "retry", but the provider may have it
    changed_at: dict[int, dt.datetime] = {}  # handed: the hand-over; sent: the record
    for part in _chunks(refs):
        for row_id, subscriber_id, status, retry_at, updated in ledger_sql.rows_by_id(
            session, list(part)
        ):
            ledger[row_id] = subscriber_id
            if status == CLAIMED and retry_at is None:
                handed.add(row_id)
                changed_at[row_id] = updated
            elif status == RETRY:
                retrying.add(row_id)
            elif status == SENT:
                changed_at[row_id] = updated
    keys = sorted({e.email_key for e in unique.values()})
    by_email: dict[str, int] = {}
    for part in _chunks(keys):
        for sub_id, key in session.execute(
            select(Subscriber.id, Subscriber.email_key).where(Subscriber.email_key.in_(part))
        ):
            by_email[key] = sub_id

    rows: list[dict[str, Any]] = []
    who: dict[str, int | None] = {}
    for event in unique.values():
        delivery_id = event.delivery_ref if event.delivery_ref in ledger else None
        subscriber_id = ledger.get(delivery_id) if delivery_id is not None else None
        if subscriber_id is None:
            subscriber_id = by_email.get(event.email_key)
        who[event.event_id] = subscriber_id
        rows.append(
            {
                "provider": PROVIDER,
                "event_id": event.event_id,
                "event_type": event.event_type,
                "delivery_id": delivery_id,
                "subscriber_id": subscriber_id,
                "occurred_at": event.occurred_at,
                "received_at": now,
                "detail": event.detail,
            }
        )
    new_ids = _insert_new(session, rows) if rows else set()
    report.stored = len(new_ids)
    report.duplicates = len(events) - len(new_ids)
    fresh = [e for e in unique.values() if e.event_id in new_ids]
    report.newest_handed = _newest_handed(fresh, handed, changed_at)

    # processed / delivered: confirm the ledger row (first confirmation wins).
    confirm = [
        e for e in fresh if e.event_type in (PROCESSED, DELIVERED) and e.delivery_ref in ledger
    ]
    delivered = {e.delivery_ref: e.occurred_at for e in confirm if e.event_type == DELIVERED}
    for part in _chunks(sorted(delivered)):
        ledger_sql.mark_delivered(session, {k: delivered[k] for k in part})
    changes: list[QueueChange] = []
    settle = sorted({e.delivery_ref for e in confirm if e.delivery_ref in handed})
    taken_back = sorted({e.delivery_ref for e in confirm if e.delivery_ref in retrying})
    for part in _chunks(taken_back):
        # The "failed" attempt went through after all: take the row back from the retry queue
        # (compare-and-set, so a dispatch that already took it for the retry wins) and settle it.
        settle.extend(ledger_sql.take_back_confirmed(session, list(part), now))
    if settle:  # SendGrid took it: the outcome the send never recorded is "sent"
        first_id = {e.delivery_ref: provider_id(e.message_id) for e in confirm}
        for row_id in settle:
            assert row_id is not None
            confirm_sent(session, row_id, first_id.get(row_id) or "", now, changes)
        session.flush()
    ids_for_message = {e.delivery_ref: provider_id(e.message_id) for e in confirm if e.message_id}
    for part in _chunks(sorted(ids_for_message)):
        ledger_sql.fill_message_ids(session, {k: ids_for_message[k] for k in part})
    report.confirmed = len({e.delivery_ref for e in confirm})

    # bounce / dropped / spamreport / unsubscribe: the subscriber is off at once.
    wanted: dict[int, str] = {}
    for e in fresh:
        person = who.get(e.event_id)
        if e.suppress_as is None or person is None:
            continue
        if _RANK[e.suppress_as] > _RANK.get(wanted.get(person, ""), 0):
            wanted[person] = e.suppress_as
    if wanted:
        changes.extend((eid, None) for eid in _suppress(session, wanted, now, report))
    session.flush()
    return report, changes


def _newest_handed(
    fresh: list[Event], handed: set[int], changed_at: dict[int, dt.datetime]
) -> dt.datetime | None:
    """The newest hand-over these events report on: a handed row's hand-over (exact), or a sent
    row's record time for its first (`processed`) event -- a request's duration after its
    hand-over at most; a later event on a sent row may come after an earlier event settled it."""
    times = [
        changed_at[e.delivery_ref]
        for e in fresh
        if e.delivery_ref in changed_at and (e.delivery_ref in handed or e.event_type == PROCESSED)
    ]
    return max(times, default=None)


def _suppress(
    session: Session, wanted: dict[int, str], now: dt.datetime, report: Report
) -> list[int]:
    by_status: dict[str, list[int]] = {}
    for sub_id, status in wanted.items():
        by_status.setdefault(status, []).append(sub_id)
    turned_off: list[int] = []
    for status, ids in by_status.items():
        for part in _chunks(sorted(ids)):
            changed = list(
                session.scalars(
                    select(Subscriber.id).where(
                        Subscriber.id.in_(part), Subscriber.status.in_((PENDING, ACTIVE))
                    )
                )
            )
            if not changed:
                continue
            session.execute(
                update(Subscriber)
                .where(Subscriber.id.in_(changed))
                .values(status=status, unsubscribed_at=now, updated_at=now),
                execution_options={"synchronize_session": False},
            )
            turned_off.extend(changed)
    report.suppressed = len(turned_off)
    webhooks_out.record_ids(session, {i: wanted[i] for i in turned_off}, now)
    unqueue: list[int] = []
    for part in _chunks(turned_off):
        # Enrollments keep their place (as subscribers.unsubscribe does) but nothing is due.
        unqueue.extend(
            session.scalars(
                select(Enrollment.id).where(
                    Enrollment.subscriber_id.in_(part),
                    Enrollment.state.not_in((FINISHED, CANCELLED)),
                )
            )
        )
        session.execute(
            update(Enrollment)
            .where(
                Enrollment.subscriber_id.in_(part),
                Enrollment.state.not_in((FINISHED, CANCELLED)),
            )
            .values(next_due_at=None, updated_at=now),
            execution_options={"synchronize_session": False},
        )
    return unqueue


def _apply_queue(settings: Settings, changes: Sequence[QueueChange]) -> None:
    """Make Redis follow the database (the send-time re-check covers a failure here)."""
    if not changes:
        return
    try:
        RedisQueue(settings).apply(changes)
    except Exception:  # Redis is derived state; the database already says it
        log.warning("events: could not apply %d queue changes", len(changes), exc_info=True)


def process_sendgrid(settings: Settings, payload: object, now: dt.datetime | None = None) -> Report:
    """Handle one webhook batch (a JSON array): store good events once, report bad ones.

    Bad input is handled per event, never half-way: each valid event is stored with all its
    effects (one transaction for the batch) and each invalid one is left out whole and named
    in `malformed` by its index, without its address. The caller answers 200 either way, so
    the provider does not resend (and we do not re-apply) the good ones.
    """
    now = now or dt.datetime.now(dt.UTC)
    if not isinstance(payload, list):
        raise MalformedEvent("the body must be a JSON array of events")
    events: list[Event] = []
    malformed: list[str] = []
    for index, raw in enumerate(payload):
        try:
            events.append(parse_sendgrid(raw))
        except MalformedEvent as exc:
            malformed.append(f"event {index}: {exc}")
    with session_scope(settings.database_url) as session:
        report, changes = store(session, events, now)
    _apply_queue(settings, changes)
    report.received = len(payload)
    report.malformed = malformed
    report.duplicates = len(events) - report.stored
    if malformed:
        log.warning("events: %d malformed of %d", len(malformed), len(payload))
    return report


def post_arrived(settings: Settings, now: dt.datetime | None = None) -> int:
    """Note a webhook post before reading it (engine.absence counts unanswered posts); its id."""
    with session_scope(settings.database_url) as session:
        return webhook_posts.post_arrived(session, now or dt.datetime.now(dt.UTC))


def post_answered(
    settings: Settings,
    post_id: int,
    status: int,
    newest_handed: dt.datetime | None,
    body_hash: str | None = None,
) -> None:
    """The answer our endpoint gave a post, how far its events reached, its body's hash."""
    with session_scope(settings.database_url) as session:
        webhook_posts.post_answered(session, post_id, status, newest_handed, body_hash)
