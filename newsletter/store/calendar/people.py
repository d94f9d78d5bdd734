"""Who is in one calendar count: the readers who get a part of a series at a moment."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from newsletter.core import schedule_rule as rule
from newsletter.store.calendar.catalogue import catalogue
from newsletter.store.calendar.groups import Group, Reads, groups, same_moment
from newsletter.store.models import ACTIVE, BROADCAST_KIND, ENROLLED_ACTIVE, Enrollment, Subscriber

PEOPLE_SHOWN = 500


@dataclass(frozen=True)
class Person:
    id: int
    email: str
    name: str | None
    zone: str


class _Identified(Protocol):
    @property
    def id(self) -> int: ...

    @property
    def kind(self) -> str: ...


def people(
    session: Session, series: _Identified, part: int, at: dt.datetime, now: dt.datetime
) -> tuple[int, list[Person]]:
    """(how many, the first PEOPLE_SHOWN) readers who get `part` of `series` at `at`."""
    cat = catalogue(session)
    end = at + dt.timedelta(seconds=1)
    matching = [
        g
        for g in groups(session, cat, now, end)
        if (series.id, part, at) in {(s.key, s.part, s.at) for s in rule.project(g.queue, now, end)}
    ]
    if not matching:
        return 0, []
    count = sum(g.count for g in matching)
    person = select(Subscriber.id, Subscriber.email, Subscriber.name, Subscriber.timezone)
    if series.kind == BROADCAST_KIND:
        keys = or_(*(_letter_filter(g) for g in matching))
        query = person.join(Enrollment, Enrollment.subscriber_id == Subscriber.id).where(
            Subscriber.status == ACTIVE, Enrollment.state == ENROLLED_ACTIVE, keys
        )
    else:
        # only the readers whose active place is one of the matching groups' (series, due
        # moment): an index range each (ix_enrollments_state_due), not every queue again
        moments = sorted({(g.key[0], g.key[2]) for g in matching})
        readers = select(Enrollment.subscriber_id).where(
            Enrollment.state == ENROLLED_ACTIVE,
            or_(
                *(
                    and_(Enrollment.series_id == sid, same_moment(Enrollment.next_due_at, due))
                    for sid, due in moments
                )
            ),
        )
        queue = any(g.by_queue for g in matching)
        reads = Reads(session, cat, now, readers, queue)
        keys = or_(*(_group_filter(reads.columns(g.by_queue), g.key) for g in matching))
        query = reads.joined(person.select_from(reads.r)).where(*reads.due(end), keys)
    shown = [
        Person(*row)
        for row in session.execute(query.order_by(Subscriber.email_key).limit(PEOPLE_SHOWN))
    ]
    return count, shown


def _same(column: Any, value: object) -> Any:
    if value is None:
        return column.is_(None)
    if isinstance(value, dt.datetime):
        return same_moment(column, value)
    return column == value


def _group_filter(cols: Sequence[Any], key: Sequence[Any]) -> Any:
    return and_(*(_same(c, v) for c, v in zip(cols, key, strict=True)))


def _letter_filter(g: Group) -> Any:
    _, bid, due, zone, paused = g.key
    return and_(
        Enrollment.series_id == bid,
        same_moment(Enrollment.next_due_at, due),
        Subscriber.timezone == zone,
        _same(Subscriber.paused_until, paused),
    )
