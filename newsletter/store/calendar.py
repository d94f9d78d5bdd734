"""The send calendar's reads: readers grouped set-based, each group projected by the schedule rule.

Readers who share their active place (series, next part, due moment), zone, cadence, pause,
start date, the whole queue behind it and the moments of their broadcasts form a *group*: one
GROUP BY row, however many readers it holds (a few hundred rows at 100k readers, never one
query per reader). Each group is projected by `core.schedule_rule.project`, the rule the engine
sends by, with the whole remaining queue (every series waiting behind the active one) and the
broadcast day rule; broadcasts themselves are grouped by (letter, due moment, zone, pause).
A person's page and the preference page project one reader the same way (`person_queue`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy import String, and_, case, cast, exists, func, literal, or_, select, union_all
from sqlalchemy.orm import Session

from newsletter.core import schedule_rule as rule
from newsletter.core import timing
from newsletter.store.models import (
    ACTIVE,
    BROADCAST_KIND,
    CLAIMED,
    ENROLLED_ACTIVE,
    LIVE,
    QUEUED,
    RETRY,
    SENT,
    Broadcast,
    Delivery,
    Enrollment,
    Part,
    Series,
    Subscriber,
)

PEOPLE_SHOWN = 500
NEAR = dt.timedelta(days=2)  # a broadcast sent longer ago than this takes no day still to come


@dataclass(frozen=True)
class Catalogue:
    """The series and parts the projection names: rule values, titles and slugs."""

    series: dict[int, Series]
    titles: dict[tuple[int, int], str]
    times: dict[int, rule.SeriesTimes]

    def part_title(self, series_id: int, number: int) -> str:
        return self.titles.get((series_id, number), f"Part {number}")


def catalogue(session: Session) -> Catalogue:
    """Every series with its parts' titles (two statements)."""
    series = {s.id: s for s in session.scalars(select(Series))}
    titles: dict[tuple[int, int], str] = {}
    counts: dict[int, int] = {}
    for sid, number, title in session.execute(select(Part.series_id, Part.number, Part.title)):
        titles[(sid, number)] = title
        counts[sid] = max(counts.get(sid, 0), number)
    times = {
        s.id: rule.SeriesTimes(s.id, s.send_day, s.send_time, s.cadence, counts.get(s.id, 0))
        for s in series.values()
    }
    return Catalogue(series, titles, times)


@dataclass(frozen=True)
class Group:
    """Readers alike for the schedule rule: `queue` is what it projects, `count` how many."""

    queue: rule.Queue
    count: int
    key: tuple[Any, ...]  # the grouped columns' values (to find its readers again)


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
    broadcast: bool = False

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


# --- the grouped reads ---------------------------------------------------------------------------


def _letters_near(session: Session, now: dt.datetime) -> list[int]:
    """Live broadcasts that still matter: waiting for someone, or sent lately (their day may
    hold back a part still to come)."""
    waiting = exists().where(Enrollment.series_id == Series.id, Enrollment.state == ENROLLED_ACTIVE)
    return list(
        session.scalars(
            select(Series.id)
            .join(Broadcast, Broadcast.series_id == Series.id)
            .where(
                Series.kind == BROADCAST_KIND,
                Series.state == LIVE,
                or_(
                    waiting,
                    Broadcast.at >= now - NEAR,
                    Broadcast.on_date >= (now - NEAR).date(),
                ),
            )
            .order_by(Series.id)
        )
    )


def _taken(letters: Sequence[int], readers: Any = None) -> Any:
    """Per reader, the moment of each of `letters` (waiting, in flight or sent): one column a
    letter, so readers with the same broadcast moments group together."""
    where_e = [Enrollment.series_id.in_(letters), Enrollment.state == ENROLLED_ACTIVE]
    where_d = [Delivery.series_id.in_(letters), Delivery.status.in_((CLAIMED, SENT, RETRY))]
    if readers is not None:
        where_e.append(Enrollment.subscriber_id.in_(readers))
        where_d.append(Delivery.subscriber_id.in_(readers))
    src = union_all(
        select(
            Enrollment.subscriber_id.label("sid"),
            Enrollment.series_id.label("bid"),
            Enrollment.next_due_at.label("at"),
        ).where(*where_e),
        select(Delivery.subscriber_id, Delivery.series_id, Delivery.scheduled_for).where(*where_d),
    ).subquery()
    moment = Enrollment.next_due_at.type
    return (
        select(
            src.c.sid.label("sid"),
            *(
                func.max(case((src.c.bid == b, src.c.at)), type_=moment).label(f"b{i}")
                for i, b in enumerate(letters)
            ),
        )
        .group_by(src.c.sid)
        .subquery()
    )


def _ranked(session: Session, readers: Any = None) -> Any:
    """Each reader's active and queued places in live series (not broadcasts), each row with
    the reader's whole waiting queue as text ("series:part:start;…" in queue order, a window
    over their rows): one scan and sort. `readers` (a subquery of ids) keeps it to those."""
    live = select(Series.id).where(Series.state == LIVE, Series.kind != BROADCAST_KIND)
    where = [Enrollment.state.in_((ENROLLED_ACTIVE, QUEUED)), Enrollment.series_id.in_(live)]
    if readers is not None:
        where.append(Enrollment.subscriber_id.in_(readers))
    text = (
        cast(Enrollment.series_id, String)
        + literal(":")
        + cast(Enrollment.next_part, String)
        + literal(":")
        + func.coalesce(cast(Enrollment.not_before, String), literal(""))
    )
    item = case((Enrollment.state == QUEUED, text))
    postgres = session.get_bind().dialect.name == "postgresql"
    joined = func.string_agg(item, literal(";")) if postgres else func.group_concat(item, ";")
    rest = joined.over(
        partition_by=Enrollment.subscriber_id,
        order_by=(Enrollment.position, Enrollment.id),
        rows=(None, None),
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
            rest.label("rest"),
        )
        .where(*where)
        .subquery()
    )


def _waiting(rest: str | None, times: dict[int, rule.SeriesTimes]) -> tuple[rule.Place, ...]:
    """The places of a reader's waiting queue from `_ranked`'s text."""
    places = []
    for item in (rest or "").split(";"):
        if not item:
            continue
        sid, part, start = item.split(":")
        if int(sid) in times:
            day = dt.date.fromisoformat(start) if start else None
            places.append(rule.Place(times[int(sid)], int(part), None, day))
    return tuple(places)


def _days(moments: Iterable[dt.datetime | None], zone: str) -> frozenset[dt.date]:
    return frozenset(timing.local_date(rule.aware(m), zone) for m in moments if m is not None)


class _Reads:
    """The statements behind the groups, built once per request."""

    def __init__(self, session: Session, now: dt.datetime, readers: Any = None) -> None:
        self.letters = _letters_near(session, now)
        self.r = _ranked(session, readers)
        self.taken = _taken(self.letters, readers) if self.letters else None

    def columns(self) -> tuple[Any, ...]:
        r = self.r
        cols: tuple[Any, ...] = (
            r.c.series_id,
            r.c.next_part,
            r.c.next_due_at,
            Subscriber.timezone,
            Subscriber.cadence,
            Subscriber.paused_until,
            r.c.not_before,
            r.c.rest,
        )
        if self.taken is not None:
            cols += tuple(self.taken.c[f"b{i}"] for i in range(len(self.letters)))
        return cols

    def joined(self, query: Any) -> Any:
        query = query.join(Subscriber, Subscriber.id == self.r.c.subscriber_id)
        if self.taken is not None:
            query = query.outerjoin(self.taken, self.taken.c.sid == self.r.c.subscriber_id)
        return query

    def due(self, before: dt.datetime) -> list[Any]:
        r = self.r
        return [
            r.c.state == ENROLLED_ACTIVE,
            r.c.next_due_at.is_not(None),
            r.c.next_due_at < before,
            Subscriber.status == ACTIVE,
        ]


def groups(session: Session, cat: Catalogue, now: dt.datetime, before: dt.datetime) -> list[Group]:
    """Every group of readers whose active part is due before `before` (one GROUP BY), and
    every group of readers waiting for a broadcast due before it (one more when any is)."""
    reads = _Reads(session, now)
    cols = reads.columns()
    query = reads.joined(select(*cols, func.count(reads.r.c.id))).where(*reads.due(before))
    out = []
    for row in session.execute(query.group_by(*cols)):
        sid, part, due, zone, cadence, paused, start, rest, *moments, n = row
        place = rule.Place(cat.times[sid], int(part), rule.aware(due), start)
        queue = rule.Queue(
            rule.Reader(zone, cadence, paused),
            (place, *_waiting(rest, cat.times)),
            (),
            _days(moments, zone),
        )
        out.append(Group(queue, int(n), tuple(row[:-1])))
    if reads.letters:
        out.extend(_letter_groups(session, reads.letters, before))
    return out


def _letter_groups(session: Session, letters: list[int], before: dt.datetime) -> list[Group]:
    cols = (Enrollment.series_id, Enrollment.next_due_at, Subscriber.timezone,
            Subscriber.paused_until)  # fmt: skip
    rows = session.execute(
        select(*cols, func.count())
        .join(Subscriber, Subscriber.id == Enrollment.subscriber_id)
        .where(
            Enrollment.series_id.in_(letters),
            Enrollment.state == ENROLLED_ACTIVE,
            Enrollment.next_due_at.is_not(None),
            Enrollment.next_due_at < before,
            Subscriber.status == ACTIVE,
        )
        .group_by(*cols)
    )
    return [
        Group(
            rule.Queue(rule.Reader(zone, paused_until=paused), (), (rule.Letter(bid, due),)),  # type: ignore[arg-type]
            int(n),
            ("letter", bid, due, zone, paused),
        )
        for bid, due, zone, paused, n in rows
    ]


def sends(
    session: Session, now: dt.datetime, end: dt.datetime, cat: Catalogue | None = None
) -> list[Send]:
    """Every send from `now` until `end`: (series, part, moment) with its readers' count and
    zones, in time order."""
    cat = cat or catalogue(session)
    found: dict[tuple[int, int, dt.datetime], Send] = {}
    for g in groups(session, cat, now, end):
        for key, number, at in rule.project(g.queue, now, end):
            send = found.get((key, number, at))
            if send is None:
                s = cat.series[key]
                send = found[(key, number, at)] = Send(
                    s.slug, s.title, number, cat.part_title(key, number), at,
                    broadcast=s.kind == BROADCAST_KIND,
                )  # fmt: skip
            send.count += g.count
            zone = g.queue.reader.zone
            send.zones[zone] = send.zones.get(zone, 0) + g.count
    return sorted(found.values(), key=lambda s: (s.at, s.series_title, s.part_number))


def upcoming(
    session: Session,
    now: dt.datetime,
    zone: str,
    weeks: int = 4,
    start: dt.date | None = None,
) -> list[Day]:
    """`weeks` weeks (in `zone`, the practice's) from the Monday of `start` (default: today),
    each day with its sends."""
    tz = timing.zone_info(zone)
    first = start or now.astimezone(tz).date()
    first -= dt.timedelta(days=first.weekday())
    days = [Day(first + dt.timedelta(days=i)) for i in range(weeks * 7)]
    end = dt.datetime.combine(days[-1].date + dt.timedelta(days=1), dt.time(0), tz)
    by_date = {d.date: d for d in days}
    for send in sends(session, now, end.astimezone(dt.UTC)):
        day = by_date.get(send.at.astimezone(tz).date())
        if day is not None:
            day.sends.append(send)
    return days


# --- who is in one count -------------------------------------------------------------------------


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
                    and_(Enrollment.series_id == sid, _at(Enrollment.next_due_at, due))
                    for sid, due in moments
                )
            ),
        )
        reads = _Reads(session, now, readers)
        cols = reads.columns()
        keys = or_(*(_group_filter(cols, g.key) for g in matching))
        query = reads.joined(person.select_from(reads.r)).where(*reads.due(end), keys)
    shown = [
        Person(*row)
        for row in session.execute(query.order_by(Subscriber.email_key).limit(PEOPLE_SHOWN))
    ]
    return count, shown


def _at(column: Any, moment: dt.datetime) -> Any:
    """`column` holds `moment`, however SQLite stored its text: rows the bulk enrollment wrote
    before it bound through UTCDateTime read '2027-01-05 09:00:00' where the ORM writes
    '…09:00:00.000000', and as text those are not equal. A microsecond either side: equality
    on PostgreSQL."""
    tick = dt.timedelta(microseconds=1)
    return and_(column > moment - tick, column < moment + tick)


def _same(column: Any, value: object) -> Any:
    if value is None:
        return column.is_(None)
    if isinstance(value, dt.datetime):
        return _at(column, value)
    return column == value


def _group_filter(cols: Sequence[Any], key: Sequence[Any]) -> Any:
    return and_(*(_same(c, v) for c, v in zip(cols, key, strict=True)))


def _letter_filter(g: Group) -> Any:
    _, bid, due, zone, paused = g.key
    return and_(
        Enrollment.series_id == bid,
        _at(Enrollment.next_due_at, due),
        Subscriber.timezone == zone,
        _same(Subscriber.paused_until, paused),
    )


# --- one person: every series in their queue, with the dates it is expected -------------------


def person_queue(session: Session, subscriber: Subscriber, now: dt.datetime) -> rule.Queue:
    """One reader's queue as the schedule rule sees it: the active place, the live series
    waiting behind it in queue order, their broadcasts still to come and the days taken by
    broadcasts in flight or sent lately."""
    reader = rule.Reader(subscriber.timezone, subscriber.cadence, subscriber.paused_until)
    if subscriber.status != ACTIVE:
        return rule.Queue(reader)
    cat = catalogue(session)
    rows = session.execute(
        select(
            Enrollment.series_id,
            Enrollment.state,
            Enrollment.next_part,
            Enrollment.next_due_at,
            Enrollment.not_before,
        )
        .where(
            Enrollment.subscriber_id == subscriber.id,
            Enrollment.state.in_((ENROLLED_ACTIVE, QUEUED)),
        )
        .order_by(Enrollment.position, Enrollment.id)
    ).all()
    active: list[rule.Place] = []
    waiting: list[rule.Place] = []
    letters: list[rule.Letter] = []
    for sid, state, part, due, start in rows:
        s = cat.series[sid]
        if s.state != LIVE:
            continue
        if s.kind == BROADCAST_KIND:
            if state == ENROLLED_ACTIVE and due is not None:
                letters.append(rule.Letter(sid, due))
        elif state == ENROLLED_ACTIVE:
            active.append(rule.Place(cat.times[sid], part, due, start))
        else:
            waiting.append(rule.Place(cat.times[sid], part, None, start))
    sent = session.scalars(
        select(Delivery.scheduled_for)
        .join(Series, Series.id == Delivery.series_id)
        .where(
            Delivery.subscriber_id == subscriber.id,
            Series.kind == BROADCAST_KIND,
            Delivery.status.in_((CLAIMED, SENT, RETRY)),
            Delivery.scheduled_for >= now - NEAR,
        )
    )
    return rule.Queue(reader, (*active, *waiting), tuple(letters), _days(sent, reader.zone))


@dataclass(frozen=True)
class Planned:
    series_id: int
    dates: list[tuple[int, dt.datetime]]  # (part, UTC moment)


def person_plan(
    session: Session, subscriber: Subscriber, now: dt.datetime, limit: int = 60
) -> dict[int, Planned]:
    """series id -> expected dates of its remaining parts (and broadcasts), by the schedule
    rule: active first, then each series queued behind it, as the engine starts it."""
    queue = person_queue(session, subscriber, now)
    plan: dict[int, Planned] = {}
    for key, part, at in rule.project(queue, now, now + dt.timedelta(weeks=limit)):
        plan.setdefault(key, Planned(key, [])).dates.append((part, at))
    return plan
