"""The ledger read for a hand-made move: what a reader has in flight or has had in one series."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from newsletter.store.models import CLAIMED, RETRY, SENT, Delivery


def in_flight(session: Session, subscriber_id: int) -> list[tuple[int, int]]:
    """(series id, part) of this reader's rows still on their way (claimed, handed or retry):
    a hand-made move waits for them, so the engine never advances a cursor she just set."""
    return [
        (s, p)
        for s, p in session.execute(
            select(Delivery.series_id, Delivery.part_number).where(
                Delivery.subscriber_id == subscriber_id,
                Delivery.status.in_((CLAIMED, RETRY)),
            )
        )
    ]


def highest_part(session: Session, subscriber_id: int, series_id: int) -> int:
    """The highest part of the series in this reader's ledger (0 when none): a cursor set by
    hand never goes back to or below it (that would be a part twice: "send again" is for that)."""
    found = session.scalar(
        select(func.max(Delivery.part_number)).where(
            Delivery.subscriber_id == subscriber_id, Delivery.series_id == series_id
        )
    )
    return int(found or 0)


def had_part(session: Session, series_id: int, part_number: int) -> list[int]:
    """The readers this part was sent to (a correction goes to them), by id."""
    return list(
        session.scalars(
            select(Delivery.subscriber_id)
            .where(
                Delivery.series_id == series_id,
                Delivery.part_number == part_number,
                Delivery.status == SENT,
                Delivery.subscriber_id.is_not(None),
            )
            .order_by(Delivery.subscriber_id)
        )
    )
