"""The ledger's named reads for the views: parts received, sends per part, outcomes, failures,
the first hand-over in a span."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, NamedTuple

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from newsletter.store.models import (
    CLAIMED,
    FAILED,
    RETRY,
    SENT,
    Delivery,
    Part,
    ProviderEvent,
    Series,
    Subscriber,
)


class ReceivedPart(NamedTuple):
    """A part a reader was sent: series, part and when."""

    series_slug: str
    series_title: str
    part_number: int
    part_title: str
    sent_at: dt.datetime | None


def received_parts(session: Session, subscriber_id: int) -> list[ReceivedPart]:
    """The parts this reader was sent, oldest first."""
    return [
        ReceivedPart(*row)
        for row in session.execute(
            select(Series.slug, Series.title, Part.number, Part.title, Delivery.sent_at)
            .join(Series, Series.id == Delivery.series_id)
            .join(
                Part, (Part.series_id == Delivery.series_id) & (Part.number == Delivery.part_number)
            )
            .where(Delivery.subscriber_id == subscriber_id, Delivery.status == SENT)
            .order_by(Delivery.sent_at, Delivery.id)
        )
    ]


def sent_per_part(session: Session, series_ids: Any | None = None) -> dict[tuple[int, int], int]:
    """(series id, part number) -> how many people have been sent it; of `series_ids` only
    when given (an index range per series, not every sent row of the ledger)."""
    stmt = (
        select(Delivery.series_id, Delivery.part_number, func.count())
        .where(Delivery.status == SENT)
        .group_by(Delivery.series_id, Delivery.part_number)
    )
    if series_ids is not None:
        if not series_ids:
            return {}
        stmt = stmt.where(Delivery.series_id.in_(sorted(series_ids)))
    return {(sid, part): int(n) for sid, part, n in session.execute(stmt)}


class Outcomes(NamedTuple):
    """The ledger's outcomes since a moment: sent, failed, and retrying (waiting for a retry,
    or handed with no answer until reconcile settles it, as the tick summary counts them)."""

    sent: int
    failed: int
    retrying: int


def outcomes_since(session: Session, since: dt.datetime) -> Outcomes:
    sent = session.scalar(
        select(func.count()).where(Delivery.status == SENT, Delivery.sent_at >= since)
    )
    failed = session.scalar(
        select(func.count()).where(Delivery.status == FAILED, Delivery.updated_at >= since)
    )
    # two counts, each an index range on status: as one OR, SQLite read the whole ledger
    waiting = select(func.count()).where(Delivery.status == RETRY).scalar_subquery()
    unknown = (
        select(func.count())
        .where(
            Delivery.status == CLAIMED,
            Delivery.retry_at.is_(None),
            Delivery.last_error.like("outcome unknown%"),
        )
        .scalar_subquery()
    )
    retrying = session.scalar(select(waiting + unknown))
    return Outcomes(int(sent or 0), int(failed or 0), int(retrying or 0))


def first_handed_between(
    session: Session, after: dt.datetime, until: dt.datetime
) -> dt.datetime | None:
    """The earliest moment mail was handed to the provider after `after` and at or before
    `until` (sent rows by sent_at; handed rows, outcome unknown, by their hand-over), or None."""
    sent = session.scalar(
        select(func.min(Delivery.sent_at)).where(
            Delivery.status == SENT, Delivery.sent_at > after, Delivery.sent_at <= until
        )
    )
    handed = session.scalar(
        select(func.min(Delivery.updated_at)).where(
            Delivery.status == CLAIMED,
            Delivery.retry_at.is_(None),
            Delivery.updated_at > after,
            Delivery.updated_at <= until,
        )
    )
    found = [t for t in (sent, handed) if t is not None]
    return min(found) if found else None


@dataclass(frozen=True)
class FailureRow:
    """A row that failed, waits for a retry, or bounced: for the dashboard and the API."""

    delivery_id: int
    subscriber_id: int | None
    email: str | None
    series_slug: str
    series_title: str
    part_number: int
    status: str
    reason: str
    when: dt.datetime


def _failure(
    d: Delivery,
    email: str | None,
    slug: str,
    title: str,
    status: str,
    reason: str,
    when: dt.datetime,
) -> FailureRow:
    return FailureRow(
        d.id, d.subscriber_id, email, slug, title, d.part_number, status, reason, when
    )


def failures_since(
    session: Session, since: dt.datetime, bounce_events: tuple[str, ...], limit: int = 50
) -> list[FailureRow]:
    """Rows failed or waiting for a retry since `since`, and rows the provider reported as
    bounced (one of `bounce_events`); newest first, at most `limit`."""
    failures: list[FailureRow] = []
    for d, slug, title, email in session.execute(
        select(Delivery, Series.slug, Series.title, Subscriber.email)
        .join(Series, Series.id == Delivery.series_id)
        .outerjoin(Subscriber, Subscriber.id == Delivery.subscriber_id)
        .where(Delivery.status.in_((FAILED, RETRY)), Delivery.updated_at >= since)
        .order_by(Delivery.updated_at.desc())
        .limit(limit)
    ):
        failures.append(
            _failure(
                d, email, slug, title, d.status, d.last_error or "no reason given", d.updated_at
            )
        )
    for ev, d, slug, title, email in session.execute(
        select(ProviderEvent, Delivery, Series.slug, Series.title, Subscriber.email)
        .join(Delivery, Delivery.id == ProviderEvent.delivery_id)
        .join(Series, Series.id == Delivery.series_id)
        .outerjoin(Subscriber, Subscriber.id == Delivery.subscriber_id)
        .where(ProviderEvent.event_type.in_(bounce_events), ProviderEvent.occurred_at >= since)
        .order_by(ProviderEvent.occurred_at.desc())
        .limit(limit)
    ):
        failures.append(
            _failure(
                d, email, slug, title, ev.event_type, ev.detail or ev.event_type, ev.occurred_at
            )
        )
    failures.sort(key=lambda f: f.when, reverse=True)
    return failures[:limit]


def person_history(session: Session, subscriber_id: int, limit: int = 200) -> list[Any]:
    """A reader's ledger rows with their series, newest first (the admin's person page)."""
    return list(
        session.execute(
            select(Delivery, Series)
            .join(Series, Series.id == Delivery.series_id)
            .where(Delivery.subscriber_id == subscriber_id)
            .order_by(Delivery.scheduled_for.desc(), Delivery.id.desc())
            .limit(limit)
        )
    )
