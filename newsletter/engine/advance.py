"""The reader's advance: after a part is settled (sent or failed), the enrollment's next part and slot."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy.orm import Session

from newsletter.engine import schedule, slots
from newsletter.store.ledger import Move, PersonRow, PlaceRow, QueueChange
from newsletter.store.models import ACTIVE, ENROLLED_ACTIVE, Enrollment, Series, Subscriber

_slots: dict[tuple[Any, ...], dt.datetime] = {}  # slot_for results (pure function of the key)


def due_time(row: Enrollment | PlaceRow, sub: Subscriber | PersonRow) -> dt.datetime | None:
    """When the enrollment is due in the queue: its next_due_at while both are active, else never."""
    return row.next_due_at if row.state == ENROLLED_ACTIVE and sub.status == ACTIVE else None


def advance(
    session: Session,
    enr: Enrollment | PlaceRow,
    sub: Subscriber | PersonRow,
    series: Series,
    count: int,
    slot: dt.datetime,
    now: dt.datetime,
    redis_changes: list[QueueChange],
    counts: dict[int, int] | None = None,
    moved: list[Move] | None = None,
) -> None:
    """schedule.advance; with `moved`, the common case (a next part in the same series, the
    enrollment stays active) is collected for one bulk UPDATE (`ledger.move_enrollments`)
    instead of 1,000 ORM updates at flush. Same values as schedule.advance computes."""
    if moved is not None and enr.next_part + 1 <= count:
        # a chunk is one article at one slot: people in the same zone/cadence/pause share it
        key = (
            sub.timezone, sub.cadence, sub.paused_until, enr.not_before, slot, now,
            series.send_day, series.send_time, series.cadence,
        )  # fmt: skip
        due = _slots.get(key)
        if due is None:
            due = slots.next_part_due(_subscriber(session, sub), series, enr.not_before, slot, now)
            if len(_slots) > 10_000:
                _slots.clear()
            _slots[key] = due
        # nothing is due for someone who left meanwhile (a resubscribe schedules afresh)
        due_now = due if sub.status == ACTIVE else None
        moved.append((enr.id, enr.next_part + 1, due_now))
        redis_changes.append((enr.id, due_now))
        return
    person = _subscriber(session, sub, load=True)
    if not isinstance(enr, Enrollment):
        loaded = session.get(Enrollment, enr.id)  # from the identity map when send_chunk preloaded
        assert loaded is not None
        enr = loaded
    for row in schedule.advance(session, enr, person, series, count, slot, now, counts):
        if person.status != ACTIVE:
            row.next_due_at = None
        redis_changes.append((row.id, due_time(row, person)))


def _subscriber(session: Session, sub: Subscriber | PersonRow, load: bool = False) -> Subscriber:
    """An ORM Subscriber for schedule's functions: the loaded one (`load`), else a transient
    one carrying the scheduling fields (slot computation reads nothing else)."""
    if isinstance(sub, Subscriber):
        return sub
    if load:
        found = session.get(Subscriber, sub.id)
        assert found is not None
        return found
    return Subscriber(
        id=sub.id, status=sub.status, timezone=sub.timezone, cadence=sub.cadence,
        paused_until=sub.paused_until,
    )  # fmt: skip
