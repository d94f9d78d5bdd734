"""One person's page by id (the admin's and the API's): who they are, their queue and mail."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from newsletter.services import calendar as coming
from newsletter.services import people
from newsletter.store import ledger
from newsletter.store.models import (
    Enrollment,
    Part,
    ProviderEvent,
    Series,
    Subscriber,
)


@dataclass(frozen=True)
class Titled:
    title: str


@dataclass(frozen=True)
class Place:
    """One enrollment as a person's page shows it."""

    series_id: int
    state: str
    next_part: int
    next_due_at: dt.datetime | None
    not_before: dt.date | None


@dataclass(frozen=True)
class QueueLine:
    e: Place
    series: Titled
    part_title: str | None
    dates: tuple[tuple[int, dt.datetime], ...]  # (part, UTC moment) expected


@dataclass(frozen=True)
class DeliveryLine:
    part_number: int
    status: str
    scheduled_for: dt.datetime
    sent_at: dt.datetime | None
    delivered_at: dt.datetime | None
    last_error: str | None


@dataclass(frozen=True)
class EventLine:
    event_type: str
    occurred_at: dt.datetime
    detail: str | None


@dataclass(frozen=True)
class Profile:
    """A person's page: who they are, their queue with expected dates, the last 200
    deliveries (with their series) and provider events."""

    person: people.PersonView
    queue: tuple[QueueLine, ...]
    deliveries: tuple[tuple[DeliveryLine, Titled], ...]
    events: tuple[EventLine, ...]
    paused: bool
    next_send: coming.ComingSend | None  # the schedule rule's next send (a part or a letter)


def part_title(session: Session, series_id: int, number: int) -> str | None:
    return session.scalar(
        select(Part.title).where(Part.series_id == series_id, Part.number == number)
    )


def profile(session: Session, subscriber_id: int, now: dt.datetime) -> Profile | None:
    """Person `subscriber_id`'s page; None if unknown."""
    sub = session.get(Subscriber, subscriber_id)
    if sub is None:
        return None
    sends = coming.coming_sends(session, sub, now)
    plan: dict[int, list[tuple[int, dt.datetime]]] = {}
    for send in sends:
        plan.setdefault(send.series_id, []).append((send.part_number, send.at))
    queue = tuple(
        QueueLine(
            Place(e.series_id, e.state, e.next_part, e.next_due_at, e.not_before),
            Titled(title),
            part_title(session, e.series_id, e.next_part),
            tuple(plan.get(e.series_id, ())),
        )
        for e, title in session.execute(
            select(Enrollment, Series.title)
            .join(Series, Series.id == Enrollment.series_id)
            .where(Enrollment.subscriber_id == sub.id)
            .order_by(Enrollment.position)
        )
    )
    deliveries = tuple(
        (
            DeliveryLine(
                d.part_number, d.status, d.scheduled_for, d.sent_at, d.delivered_at, d.last_error
            ),
            Titled(series.title),
        )
        for d, series in ledger.person_history(session, sub.id)
    )
    events = tuple(
        EventLine(ev.event_type, ev.occurred_at, ev.detail)
        for ev in session.scalars(
            select(ProviderEvent)
            .where(ProviderEvent.subscriber_id == sub.id)
            .order_by(ProviderEvent.occurred_at.desc())
            .limit(200)
        )
    )
    paused = coming.pause_running(sub, now)  # on the reader's own calendar, not UTC's
    return Profile(people.view(sub), queue, deliveries, events, paused, sends[0] if sends else None)
