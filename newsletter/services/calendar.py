"""The calendar's use case: what goes out when, as ready-to-show values for every view.

The admin's calendar page and `GET /api/v1/calendar` render the same `CalendarView`; a person's
page, the API's subscriber endpoint, the preference page's "next date", the confirmation page's
first date and the dashboard's week ask the same projection (`store.calendar`, which groups the
readers, and `core.schedule_rule`, which the engine sends by), so none of them can differ from
each other or from the sends.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from newsletter.core import schedule_rule as rule
from newsletter.core import timing
from newsletter.core.vocabulary import BROADCAST_KIND
from newsletter.services.people import Someone, row_of
from newsletter.store import calendar
from newsletter.store import series as series_store
from newsletter.store.models import Series, Subscriber

MAX_WEEKS = 12
Day = calendar.Day
Send = calendar.Send
Person = calendar.Person


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True)
class LocalTime:
    """Readers of one entry in one zone: their local send time ("Tue 09:00") and how many."""

    zone: str
    time: str
    count: int


@dataclass(frozen=True)
class Entry:
    """One (day in the practice's zone, series, part): how many readers, at their local times."""

    day: dt.date
    series_slug: str
    series_title: str
    part_number: int
    part_title: str
    count: int
    broadcast: bool
    local_times: tuple[LocalTime, ...]


@dataclass(frozen=True)
class CalendarView:
    """`weeks` weeks from `start` (a Monday) in the practice's `zone`, day by day."""

    zone: str
    start: dt.date
    weeks: int
    today: dt.date
    days: list[calendar.Day] = field(default_factory=list)

    @property
    def busy(self) -> bool:
        return any(d.sends for d in self.days)

    def by_week(self) -> list[list[calendar.Day]]:
        return [self.days[i : i + 7] for i in range(0, len(self.days), 7)]

    def entries(self) -> list[Entry]:
        """One entry per (day, series, part): the sends of a day summed over their moments."""
        out: list[Entry] = []
        for day in self.days:
            merged: dict[tuple[str, int], list[calendar.Send]] = {}
            for send in day.sends:
                merged.setdefault((send.series_slug, send.part_number), []).append(send)
            for (slug, part), sends in merged.items():
                times: dict[tuple[str, str], int] = {}
                for send in sends:
                    for zone, text, n in send.local_slots():
                        times[(zone, text)] = times.get((zone, text), 0) + n
                first = sends[0]
                out.append(
                    Entry(
                        day.date,
                        slug,
                        first.series_title,
                        part,
                        first.part_title,
                        sum(s.count for s in sends),
                        first.broadcast,
                        tuple(
                            LocalTime(zone, text, n)
                            for (zone, text), n in sorted(
                                times.items(), key=lambda kv: (-kv[1], kv[0])
                            )
                        ),
                    )
                )
        return out


def monday_of(day: dt.date) -> dt.date:
    return day - dt.timedelta(days=day.weekday())


def calendar_view(
    session: Session,
    zone: str,
    now: dt.datetime,
    start: dt.date | None = None,
    weeks: int = 4,
) -> CalendarView:
    """The calendar from the Monday of `start` (default: this week's, in `zone`)."""
    if not 1 <= weeks <= MAX_WEEKS:
        raise ValueError(f"weeks must be from 1 to {MAX_WEEKS}")
    today = timing.local_date(now, zone)
    first = monday_of(start or today)
    days = calendar.upcoming(session, now, zone, weeks, first)
    return CalendarView(zone, first, weeks, today, days)


@dataclass(frozen=True)
class Count:
    """Who is in one calendar count: the series, how many, the first few hundred."""

    series: Series
    count: int
    people: list[calendar.Person]

    @property
    def cut(self) -> int:
        return self.count - len(self.people)


def people_at(
    session: Session, slug: str, part: int, at: dt.datetime, now: dt.datetime
) -> Count | None:
    """Who gets `part` of the series `slug` at `at`; None when there is no such series."""
    series = series_store.by_slug(session, slug)
    if series is None:
        return None
    count, people = calendar.people(session, series, part, at, now)
    return Count(series, count, people)


# --- one reader ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ComingSend:
    """One of a reader's coming sends."""

    series_id: int
    series_slug: str
    series_title: str
    part_number: int
    part_title: str
    at: dt.datetime  # UTC
    local_date: dt.date  # in the reader's zone
    broadcast: bool


def coming_sends(
    session: Session, subscriber: Subscriber, now: dt.datetime, weeks: int = 60
) -> list[ComingSend]:
    """The reader's sends over the coming `weeks`, in time order, by the schedule rule."""
    queue = calendar.person_queue(session, subscriber, now)
    sends = rule.project(queue, now, now + dt.timedelta(weeks=weeks))
    if not sends:
        return []
    cat = calendar.catalogue(session)
    out = []
    for key, part, at in sends:
        s = cat.series[key]
        out.append(
            ComingSend(
                key,
                s.slug,
                s.title,
                part,
                cat.part_title(key, part),
                at,
                timing.local_date(at, subscriber.timezone),
                s.kind == BROADCAST_KIND,
            )
        )
    return out


def next_date(session: Session, subscriber: Someone, now: dt.datetime) -> dt.datetime | None:
    """When the reader's next article (or letter) arrives, None when nothing is coming."""
    found = rule.next_send(calendar.person_queue(session, row_of(session, subscriber), now), now)
    return None if found is None else found.at


def next_date_of(
    session: Session, subscriber_id: int, now: dt.datetime
) -> tuple[dt.datetime | None, str] | None:
    """(`next_date` of person `subscriber_id`, their zone): the CLI's "first article" line, the
    same date the confirmation page shows; None when there is no such person."""
    subscriber = session.get(Subscriber, subscriber_id)
    if subscriber is None:
        return None
    return next_date(session, subscriber, now), subscriber.timezone


def pause_running(subscriber: Someone, now: dt.datetime) -> bool:
    """True while the reader's pause holds, on their own calendar (not UTC's)."""
    reader = rule.Reader(subscriber.timezone, subscriber.cadence, subscriber.paused_until)
    return rule.pause_holds(reader, now)


def local_today(subscriber: Someone, now: dt.datetime) -> dt.date:
    """Today in the reader's zone (what a pause date is compared with)."""
    return timing.local_date(now, subscriber.timezone)
