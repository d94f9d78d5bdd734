"""Rows stuck in claimed: lost claims requeued, unknown hand-overs resent or settled (reconcile)."""

from __future__ import annotations

import datetime as dt
from typing import NamedTuple

from sqlalchemy import and_, select, update
from sqlalchemy.orm import Session

from newsletter.store.ledger.rows import RESENT_NOTE
from newsletter.store.models import CLAIMED, RETRY, SENT, Delivery, Enrollment


class HandedRow(NamedTuple):
    """A handed row whose outcome is unknown: id, hand-over time, crashes counted against it."""

    id: int
    handed_at: dt.datetime
    crashes: int


class SettledRow(NamedTuple):
    """A handed row whose outcome was recorded after the fact: whose and which part."""

    subscriber_id: int
    series_id: int
    part_number: int
    scheduled_for: dt.datetime


def requeue_lost(session: Session, stale: dt.datetime, now: dt.datetime) -> list[int]:
    """claimed, never handed and claimed before `stale` (the send task was lost) -> retry now;
    the ids."""
    return list(
        session.scalars(
            update(Delivery)
            .where(
                Delivery.status == CLAIMED,
                Delivery.retry_at.is_not(None),
                Delivery.retry_at < stale,
            )
            .values(status=RETRY, retry_at=now, updated_at=now)
            .returning(Delivery.id)
        )
    )


def handed_before(session: Session, stale: dt.datetime, limit: int = 10_000) -> list[HandedRow]:
    """Handed rows (claimed, retry_at NULL) handed over before `stale`: outcome unknown."""
    return [
        HandedRow(*row)
        for row in session.execute(
            select(Delivery.id, Delivery.updated_at, Delivery.crashes)
            .where(
                Delivery.status == CLAIMED,
                Delivery.retry_at.is_(None),
                Delivery.updated_at < stale,
            )
            .limit(limit)
        )
    ]


def resend(session: Session, ids: list[int], now: dt.datetime, note: str = RESENT_NOTE) -> None:
    """handed -> retry now, noting why the reader may get the part twice (RESENT_NOTE, or the
    caller's reason); compare-and-set on "still handed"."""
    for start in range(0, len(ids), 1000):
        session.execute(
            update(Delivery)
            .where(
                Delivery.id.in_(ids[start : start + 1000]),
                Delivery.status == CLAIMED,
                Delivery.retry_at.is_(None),
            )
            .values(status=RETRY, retry_at=now, updated_at=now, last_error=note)
        )


def settle_handed(
    session: Session,
    delivery_id: int,
    status: str,
    now: dt.datetime,
    *,
    message_id: str | None = None,
    error: str | None = None,
) -> SettledRow | None:
    """A handed row's outcome found after the fact: `sent` (with the provider's message id) or
    `failed` (with the reason). None when the row is gone, no longer claimed, or erased."""
    d = session.get(Delivery, delivery_id)
    if d is None or d.status != CLAIMED or d.subscriber_id is None:
        return None
    d.status, d.updated_at = status, now
    if status == SENT:
        d.provider_message_id, d.sent_at = message_id, now
    else:
        d.last_error = error
    return SettledRow(d.subscriber_id, d.series_id, d.part_number, d.scheduled_for)


def enrollment_ids_of(session: Session, delivery_ids: list[int]) -> list[int]:
    """The enrollments these ledger rows belong to (1,000 ids per SELECT)."""
    found: list[int] = []
    for start in range(0, len(delivery_ids), 1000):
        found.extend(
            session.scalars(
                select(Enrollment.id)
                .join(
                    Delivery,
                    and_(
                        Delivery.subscriber_id == Enrollment.subscriber_id,
                        Delivery.series_id == Enrollment.series_id,
                    ),
                )
                .where(Delivery.id.in_(delivery_ids[start : start + 1000]))
            )
        )
    return found
