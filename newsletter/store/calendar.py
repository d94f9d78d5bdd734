"""The send calendar: who gets which part when over the coming weeks, from set-based queries.

Each active enrollment knows its next part and when it is due (`next_due_at`). Readers who
share a series, next part, due moment, zone, cadence, pause and start date form a *group*: one
GROUP BY row, however many readers it holds (a few hundred rows at 100k readers, never one
query per reader). Each group's later parts are projected with the same slot arithmetic the
engine uses (core.timing.next_slot: the series' day and time in the reader's zone, one cadence
apart). Overdue parts are shown at `now` (the next tick sends them).

Not projected: a series still waiting behind another in a reader's queue (it gets dates when
the earlier one ends); a person's page shows those for one reader (`person_plan`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from newsletter.core import timing
from newsletter.store.models import (
    ACTIVE,
    CADENCES,
    ENROLLED_ACTIVE,
    LIVE,
    QUEUED,
    Enrollment,
    Part,
    Series,
    Subscriber,
)

PEOPLE_SHOWN = 500


def _aware(value: dt.datetime) -> dt.datetime:
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value


@dataclass(frozen=True)
class Group:
    """Readers who get the same parts at the same moments."""

    series_id: int
    next_part: int
    due: dt.datetime
    zone: str
    cadence: str
    paused_until: dt.date | None
    not_before: dt.date | None
    count: int
    # the series that starts when this one ends (the first queued behind it), if any
    then_series_id: int | None = None
    then_part: int | None = None
    then_not_before: dt.date | None = None


@dataclass
class Send:
    """One calendar entry: a part of a series going out at one moment, to `count` readers."""

    series_slug: str
    series_title: str
    part_number: int
    part_title: str
    at: dt.datetime  # UTC
    count: int = 0
    zones: dict[str, int] = field(default_factory=dict)  # reader zone -> readers

    def local_slots(self) -> list[tuple[str, str, int]]:
        """(zone, their local time like "Tue 09:00", readers), biggest first."""
        out = []
        for zone, n in sorted(self.zones.items(), key=lambda kv: (-kv[1], kv[0])):
            local = self.at.astimezone(timing.zone_info(zone))
            out.append((zone, f"{local:%a %H:%M}", n))
        return out


@dataclass
class Day:
    date: dt.date
    sends: list[Send] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(s.count for s in self.sends)


def _series(session: Session) -> dict[int, Series]:
    return {s.id: s for s in session.scalars(select(Series))}


def _part_titles(session: Session) -> dict[tuple[int, int], str]:
    rows = session.execute(select(Part.series_id, Part.number, Part.title))
    return {(sid, n): title for sid, n, title in rows}


def _ranked(session: Session, readers: Any = None) -> Any:
    """Each reader's active and queued enrollments in live series, in queue order, each with
    the series that comes after it (LEAD over their queue): one scan and sort whatever the
    table statistics say, where a join to a per-reader MIN(position) became a nested loop on
    PostgreSQL right after a bulk insert (minutes at 20k readers). `readers`, a subquery of
    subscriber ids, keeps the scan to those readers (whole queues, so LEAD is unchanged)."""
    live = list(session.scalars(select(Series.id).where(Series.state == LIVE)))
    where = [Enrollment.state.in_((ENROLLED_ACTIVE, QUEUED)), Enrollment.series_id.in_(live)]
    if readers is not None:
        where.append(Enrollment.subscriber_id.in_(readers))

    def after(column: Any) -> Any:
        return func.lead(column, type_=column.type).over(
            partition_by=Enrollment.subscriber_id, order_by=Enrollment.position
        )

    return (
        select(
            Enrollment.id.label("id"),
            Enrollment.subscriber_id.label("subscriber_id"),
            Enrollment.series_id.label("series_id"),
            Enrollment.state.label("state"),
            Enrollment.next_part.label("next_part"),
            Enrollment.next_due_at.label("next_due_at"),
            Enrollment.not_before.label("not_before"),
            after(Enrollment.series_id).label("then_series_id"),
            after(Enrollment.next_part).label("then_part"),
            after(Enrollment.not_before).label("then_not_before"),
        )
        .where(*where)
        .subquery()
    )


def _due(r: Any, before: dt.datetime) -> list[Any]:
    return [
        r.c.state == ENROLLED_ACTIVE,
        r.c.next_due_at.is_not(None),
        r.c.next_due_at < before,
        Subscriber.status == ACTIVE,
    ]


def groups(session: Session, before: dt.datetime) -> list[Group]:
    """Every group with a part due before `before`: one GROUP BY query."""
    r = _ranked(session)
    cols = (
        r.c.series_id,
        r.c.next_part,
        r.c.next_due_at,
        Subscriber.timezone,
        Subscriber.cadence,
        Subscriber.paused_until,
        r.c.not_before,
        r.c.then_series_id,
        r.c.then_part,
        r.c.then_not_before,
    )
    rows: Any = session.execute(
        select(*cols, func.count(r.c.id))
        .join(Subscriber, Subscriber.id == r.c.subscriber_id)
        .where(*_due(r, before))
        .group_by(*cols)
    )
    return [
        Group(
            sid,
            int(part),
            _aware(due),
            zone,
            cadence,
            paused,
            nb,
            int(n),
            then_sid,
            None if then_part is None else int(then_part),
            tnb,
        )
        for sid, part, due, zone, cadence, paused, nb, then_sid, then_part, tnb, n in rows
    ]


def _weeks(cadence: str, series: Series) -> int:
    return max(CADENCES.get(cadence, 1), CADENCES.get(series.cadence, 1))


def project(
    group: Group, series: Series, parts: int, now: dt.datetime, end: dt.datetime
) -> Iterator[tuple[int, dt.datetime]]:
    """(part, UTC moment) for this group's parts of `series` from its next one until `end`."""
    at = group.due
    for number in range(group.next_part, parts + 1):
        shown = max(at, now)  # overdue: goes out at the next tick
        if shown >= end:
            return
        yield number, shown
        at = timing.next_slot(
            shown,
            group.zone,
            series.send_day,
            series.send_time,
            _weeks(group.cadence, series),
            paused_until=group.paused_until,
            previous=at,
            not_before=group.not_before,
        )


def chain(
    group: Group,
    series: dict[int, Series],
    counts: dict[int, int],
    now: dt.datetime,
    end: dt.datetime,
) -> Iterator[tuple[int, int, dt.datetime]]:
    """(series id, part, moment): the group's series, then the one queued behind it, as the
    engine starts it (one cadence after the last part's slot, not before its start date)."""
    own = series[group.series_id]
    last: dt.datetime | None = None
    number = group.next_part - 1
    for number, at in project(group, own, counts.get(own.id, 0), now, end):
        last = at
        yield own.id, number, at
    nxt = series.get(group.then_series_id or 0)
    if nxt is None or last is None or number < counts.get(own.id, 0):
        return
    start = timing.next_slot(
        last,
        group.zone,
        nxt.send_day,
        nxt.send_time,
        _weeks(group.cadence, nxt),
        paused_until=group.paused_until,
        previous=last,
        not_before=group.then_not_before,
    )
    follow = Group(
        nxt.id,
        group.then_part or 1,
        start,
        group.zone,
        group.cadence,
        group.paused_until,
        group.then_not_before,
        group.count,
    )
    for number, at in project(follow, nxt, counts.get(nxt.id, 0), now, end):
        yield nxt.id, number, at


def _part_counts(session: Session) -> dict[int, int]:
    rows = session.execute(select(Part.series_id, func.max(Part.number)).group_by(Part.series_id))
    return {sid: int(n or 0) for sid, n in rows}


def upcoming(session: Session, now: dt.datetime, zone: str, weeks: int = 4) -> list[Day]:
    """The next `weeks` weeks from today in `zone` (the admin's), each day with its sends."""
    tz = timing.zone_info(zone)
    today = now.astimezone(tz).date()
    first = today - dt.timedelta(days=today.weekday())  # from this week's Monday
    days = [Day(first + dt.timedelta(days=i)) for i in range(weeks * 7)]
    end = dt.datetime.combine(days[-1].date + dt.timedelta(days=1), dt.time(0), tz)
    series = _series(session)
    titles = _part_titles(session)
    counts = _part_counts(session)
    sends: dict[tuple[int, int, dt.datetime], Send] = {}
    for g in groups(session, end.astimezone(dt.UTC)):
        for series_id, number, at in chain(g, series, counts, now, end):
            s = series[series_id]
            key = (s.id, number, at)
            send = sends.get(key)
            if send is None:
                title = titles.get((s.id, number), f"Part {number}")
                send = sends[key] = Send(s.slug, s.title, number, title, at)
            send.count += g.count
            send.zones[g.zone] = send.zones.get(g.zone, 0) + g.count
    by_date = {d.date: d for d in days}
    for send in sorted(sends.values(), key=lambda s: (s.at, s.series_title, s.part_number)):
        day = by_date.get(send.at.astimezone(tz).date())
        if day is not None:
            day.sends.append(send)
    return days


@dataclass(frozen=True)
class Person:
    id: int
    email: str
    name: str | None
    zone: str


class _Identified(Protocol):
    @property
    def id(self) -> int: ...


def people(
    session: Session, series: _Identified, part: int, at: dt.datetime, now: dt.datetime
) -> tuple[int, list[Person]]:
    """(how many, the first PEOPLE_SHOWN) readers who get `part` of `series` at `at`."""
    every = _series(session)
    counts = _part_counts(session)
    end = at + dt.timedelta(seconds=1)
    matching = [
        g
        for g in groups(session, end)
        if (series.id, part, at) in set(chain(g, every, counts, now, end))
    ]
    if not matching:
        return 0, []
    # only the readers whose active part is one of the matching groups' (series, due moment):
    # an index range each (ix_enrollments_state_due), not every reader's queue again
    moments = sorted({(g.series_id, g.due) for g in matching})
    readers = select(Enrollment.subscriber_id).where(
        Enrollment.state == ENROLLED_ACTIVE,
        or_(
            *(
                and_(Enrollment.series_id == sid, _at(Enrollment.next_due_at, due))
                for sid, due in moments
            )
        ),
    )
    r = _ranked(session, readers)
    keys = or_(*(_group_filter(g, r) for g in matching))
    base = (
        select(Subscriber.id, Subscriber.email, Subscriber.name, Subscriber.timezone)
        .join(r, r.c.subscriber_id == Subscriber.id)
        .where(*_due(r, end), keys)
    )
    shown = [
        Person(*row)
        for row in session.execute(base.order_by(Subscriber.email_key).limit(PEOPLE_SHOWN))
    ]
    return sum(g.count for g in matching), shown


def _at(column: Any, moment: dt.datetime) -> Any:
    """`column` holds `moment`, however SQLite stored its text: rows the bulk enrollment wrote
    before it bound through UTCDateTime read '2027-01-05 09:00:00' where the ORM writes
    '…09:00:00.000000', and as text those are not equal. A microsecond either side: equality
    on PostgreSQL."""
    tick = dt.timedelta(microseconds=1)
    return and_(column > moment - tick, column < moment + tick)


def _group_filter(g: Group, r: Any) -> Any:
    def same(column: Any, value: object) -> Any:
        return column.is_(None) if value is None else column == value

    return and_(
        r.c.series_id == g.series_id,
        r.c.next_part == g.next_part,
        _at(r.c.next_due_at, g.due),
        Subscriber.timezone == g.zone,
        Subscriber.cadence == g.cadence,
        same(Subscriber.paused_until, g.paused_until),
        same(r.c.not_before, g.not_before),
        same(r.c.then_series_id, g.then_series_id),
        same(r.c.then_part, g.then_part),
        same(r.c.then_not_before, g.then_not_before),
    )


# --- one person: every series in their queue, with the dates it is expected -------------------


@dataclass(frozen=True)
class Planned:
    series_id: int
    dates: list[tuple[int, dt.datetime]]  # (part, UTC moment)


def person_plan(
    session: Session, subscriber: Subscriber, now: dt.datetime, limit: int = 60
) -> dict[int, Planned]:
    """series id -> expected dates of its remaining parts, active first, then queued in order.

    A queued series starts one cadence after the previous one's last part (at the earliest on
    its start date), as the engine places it when the earlier series finishes.
    """
    series = _series(session)
    counts = _part_counts(session)
    rows: Sequence[Enrollment] = list(
        session.scalars(
            select(Enrollment)
            .where(
                Enrollment.subscriber_id == subscriber.id,
                Enrollment.state.in_((ENROLLED_ACTIVE, QUEUED)),
            )
            .order_by(Enrollment.position)
        )
    )
    plan: dict[int, Planned] = {}
    last: dt.datetime | None = None
    far = now + dt.timedelta(days=7 * limit)
    for e in rows:
        s = series.get(e.series_id)
        if s is None or subscriber.status != ACTIVE:
            continue
        if e.state == ENROLLED_ACTIVE and e.next_due_at is not None:
            due = _aware(e.next_due_at)
        else:
            weeks = max(CADENCES.get(subscriber.cadence, 1), CADENCES.get(s.cadence, 1))
            due = timing.next_slot(
                max(last or now, now),
                subscriber.timezone,
                s.send_day,
                s.send_time,
                weeks,
                paused_until=subscriber.paused_until,
                previous=last,
                not_before=e.not_before,
            )
        g = Group(
            s.id,
            e.next_part,
            due,
            subscriber.timezone,
            subscriber.cadence,
            subscriber.paused_until,
            e.not_before,
            1,
        )
        dates = list(project(g, s, counts.get(s.id, 0), now, far))
        plan[s.id] = Planned(s.id, dates)
        if dates:
            last = dates[-1][1]
        if s.state != LIVE:  # a paused series holds everything queued after it
            break
    return plan
