"""A claimed chunk: its rows read, forgotten, handed over or put back to retry (send_chunk)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import and_, delete, select, update
from sqlalchemy.orm import Session

from newsletter.store.ledger.dialect import among, id_range, status_is
from newsletter.store.ledger.rows import (
    LEDGER_COLUMNS,
    PERSON_COLUMNS,
    PLACE_COLUMNS,
    LedgerRow,
    PersonRow,
    PlaceRow,
    split_row,
)
from newsletter.store.models import CLAIMED, RETRY, Delivery, Enrollment, Subscriber


def claimed_rows(session: Session, ids: list[int]) -> list[tuple[LedgerRow, PersonRow, PlaceRow]]:
    """The chunk's rows still claimed and not handed, with their subscriber and enrollment.

    The ledger row, the subscriber and the enrollment as plain columns: a chunk loads 1,000 of
    each. Filtered here, not in SQL: during a burst most of the ledger is `claimed`, and a
    status condition can tempt the planner into scanning the status index instead of looking
    the chunk's ids up by primary key."""
    found = session.execute(
        select(*LEDGER_COLUMNS, *PERSON_COLUMNS, *PLACE_COLUMNS)
        .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
        .join(
            Enrollment,
            and_(
                Enrollment.subscriber_id == Delivery.subscriber_id,
                Enrollment.series_id == Delivery.series_id,
            ),
        )
        .where(among(session, Delivery.id, ids), id_range(ids))
    ).all()
    return [split_row(r) for r in found if r[1] == CLAIMED and r[2]]


def forget_claimed(session: Session, ids: list[int]) -> None:
    """claimed (never handed) -> deleted: rows that must not be sent now, so a later resume or
    resubscribe sends the part then. Compare-and-set: a handed row is never deleted."""
    if not ids:
        return
    session.execute(
        delete(Delivery).where(
            among(session, Delivery.id, ids),
            status_is(CLAIMED),
            Delivery.retry_at.is_not(None),
        )
    )


def hand_over(session: Session, ids: list[int], chunk_ids: list[int], now: dt.datetime) -> set[int]:
    """claimed -> handed by compare-and-set (the caller commits before calling the provider):
    only the process that flips a row may call the provider for it. The ids it flipped.

    `now` is the hand-over time, which reconcile's window counts from (a Celery task adds its
    queueing delay to the tick's); crashes + 1 until the outcome is recorded: a process that
    dies meanwhile leaves it counted (poison rows, see reconcile)."""
    return set(
        session.scalars(
            update(Delivery)
            .where(
                among(session, Delivery.id, ids),
                id_range(chunk_ids),
                status_is(CLAIMED),
                Delivery.retry_at.is_not(None),
            )
            .values(
                attempts=Delivery.attempts + 1,
                crashes=Delivery.crashes + 1,
                retry_at=None,
                updated_at=now,
            )
            .returning(Delivery.id)
            .execution_options(synchronize_session=False)  # rows are read by id afterwards
        )
    )


def back_to_retry(
    session: Session, ids: list[int], at: dt.datetime, now: dt.datetime, error: str | None = None
) -> set[int]:
    """Claimed, not yet handed rows -> retry at `at`, by compare-and-set; the ids it changed.

    A duplicate copy of the send task may have handed (or sent) some of them since they were
    read: those, and their enrollments, must not turn back into retries."""
    values: dict[str, Any] = {"status": RETRY, "retry_at": at, "updated_at": now}
    if error is not None:
        values["last_error"] = error
    return set(
        session.scalars(
            update(Delivery)
            .where(
                among(session, Delivery.id, ids),
                status_is(CLAIMED),
                Delivery.retry_at.is_not(None),
            )
            .values(**values)
            .returning(Delivery.id)
            .execution_options(synchronize_session=False)
        )
    )
