"""What the schedule rule reads: a reader's and a series' times, part counts, the last slot a
reader was sent (cadence counts from it), the series a new reader joins. `engine.schedule`
applies the rule to them (its callers reach these through it too)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from newsletter.core import schedule_rule as rule
from newsletter.store.models import (
    BROADCAST_KIND,
    FAILED,
    LIVE,
    PAUSED,
    SENT,
    Delivery,
    Part,
    Series,
)


def reader_of(subscriber: Any) -> rule.Reader:
    """The schedule rule's view of a subscriber (an ORM row or a plain row with the fields)."""
    return rule.Reader(subscriber.timezone, subscriber.cadence, subscriber.paused_until)


def times_of(series: Series, parts: int = 0) -> rule.SeriesTimes:
    """The schedule rule's view of a series (`parts`: how many it has, where it matters)."""
    return rule.SeriesTimes(series.id, series.send_day, series.send_time, series.cadence, parts)


def part_counts(session: Session) -> dict[int, int]:
    """series id -> number of parts."""
    rows = session.execute(select(Part.series_id, func.count()).group_by(Part.series_id))
    return {sid: n for sid, n in rows}


def last_slot(session: Session, subscriber_id: int) -> dt.datetime | None:
    """The slot of the last article this subscriber was sent (cadence counts from it).

    As in `advance`: a send more than a day after its slot counts from the day before the real
    send (max over rows of max(slot, sent - 1 day) == max(max slot, max sent - 1 day)).
    """
    return last_slots(session, [subscriber_id]).get(subscriber_id)


def last_slots(session: Session, subscriber_ids: list[int]) -> dict[int, dt.datetime | None]:
    """`last_slot` of each of these subscribers, one statement (absent: none sent yet)."""
    found = session.execute(
        select(Delivery.subscriber_id, func.max(Delivery.scheduled_for), func.max(Delivery.sent_at))
        .where(
            Delivery.subscriber_id.in_(subscriber_ids),
            Delivery.status.in_((SENT, FAILED)),
            Delivery.series_id.not_in(broadcast_ids()),  # one-off letters set no cadence
        )
        .group_by(Delivery.subscriber_id)
    )
    slots: dict[int, dt.datetime | None] = {}
    for subscriber_id, slot, sent in found:
        if subscriber_id is None:  # not among those asked for (an erased reader's rows)
            continue
        values = [rule.aware(v) for v in (slot, sent) if v is not None]
        if sent is not None:
            values[-1] -= dt.timedelta(days=1)
        slots[subscriber_id] = max(values, default=None)
    return slots


def broadcast_ids() -> Select[int]:
    """Broadcast series ids: a broadcast's enrollment lives beside the reader's series queue
    (engine.broadcasts), never in it: queue rules, positions and cadence ignore it."""
    return select(Series.id).where(Series.kind == BROADCAST_KIND)


def series_in_queue_order(session: Session) -> list[Series]:
    """The series a new reader is enrolled in (live or paused, not broadcasts), in queue order."""
    return list(
        session.scalars(
            select(Series)
            .where(Series.state.in_((LIVE, PAUSED)), Series.kind != BROADCAST_KIND)
            .order_by(Series.order, Series.queued_at, Series.id)
        )
    )
