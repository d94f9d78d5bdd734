"""Provider events on the ledger: rows looked up, confirmed, marked delivered, message ids filled."""

from __future__ import annotations

import datetime as dt
from typing import NamedTuple

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.orm import Session

from newsletter.store.ledger.dialect import TABLE
from newsletter.store.models import CLAIMED, RETRY, Delivery


class EventRef(NamedTuple):
    """A ledger row a provider event names: whose, where it stands, when it last changed (a
    handed row's hand-over, a sent row's record)."""

    id: int
    subscriber_id: int | None
    status: str
    retry_at: dt.datetime | None
    updated_at: dt.datetime


def rows_by_id(session: Session, ids: list[int]) -> list[EventRef]:
    """The ledger rows with these ids (one SELECT; the caller chunks)."""
    return [
        EventRef(*row)
        for row in session.execute(
            select(
                Delivery.id,
                Delivery.subscriber_id,
                Delivery.status,
                Delivery.retry_at,
                Delivery.updated_at,
            ).where(Delivery.id.in_(ids))
        )
    ]


def mark_delivered(session: Session, delivered: dict[int, dt.datetime]) -> None:
    """The provider's `delivered` moments; the first one wins (one executemany)."""
    if not delivered:
        return
    stmt = (
        update(TABLE)
        .where(TABLE.c.id == bindparam("row_id"))
        .values(
            delivered_at=func.coalesce(
                TABLE.c.delivered_at, bindparam("at", type_=Delivery.delivered_at.type)
            )
        )
    )
    session.connection().execute(stmt, [{"row_id": k, "at": v} for k, v in delivered.items()])


def take_back_confirmed(session: Session, ids: list[int], now: dt.datetime) -> list[int]:
    """retry -> handed for rows the provider says it took after all (a timeout or 5xx said
    "retry"): compare-and-set, so a dispatch that already took the row for its retry wins.
    The ids taken back (the caller settles them as sent)."""
    if not ids:
        return []
    return list(
        session.scalars(
            update(Delivery)
            .where(Delivery.id.in_(ids), Delivery.status == RETRY)
            .values(status=CLAIMED, retry_at=None, updated_at=now)
            .returning(Delivery.id),
            execution_options={"synchronize_session": False},
        )
    )


def fill_message_ids(session: Session, message_ids: dict[int, str | None]) -> None:
    """The provider's message id on rows that have none yet (one executemany)."""
    if not message_ids:
        return
    stmt = (
        update(TABLE)
        .where(TABLE.c.id == bindparam("row_id"), TABLE.c.provider_message_id.is_(None))
        .values(provider_message_id=bindparam("mid"))
    )
    session.connection().execute(stmt, [{"row_id": k, "mid": v} for k, v in message_ids.items()])
