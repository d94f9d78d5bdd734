"""Dashboard queries: who is subscribed, what goes out this week, what was sent and what failed."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from newsletter.core import schedule_rule as rule
from newsletter.store import calendar, ledger
from newsletter.store.halt import halted
from newsletter.store.ledger import FailureRow
from newsletter.store.models import (
    ACTIVE,
    BOUNCED,
    COMPLAINED,
    ENROLLED_ACTIVE,
    PENDING,
    UNSUBSCRIBED,
    Enrollment,
    Part,
    ProviderEvent,
    Series,
    Subscriber,
)

HALTED_KEY = "sending_halted"
BOUNCE_EVENTS = ("bounce", "bounced", "dropped", "blocked")
STATUS_ORDER = ("pending", "active", "paused", UNSUBSCRIBED, BOUNCED, COMPLAINED)


@dataclass(frozen=True)
class Cohort:
    """Everyone who gets the same article at the same local slot."""

    series_slug: str
    series_title: str
    part_number: int
    part_title: str
    count: int
    first_at: dt.datetime  # earliest UTC send time in this cohort that day


@dataclass
class Day:
    date: dt.date
    cohorts: list[Cohort] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(c.count for c in self.cohorts)


@dataclass
class _Acc:
    title: str
    part_title: str
    count: int
    first: dt.datetime


@dataclass
class Recent:
    sent: int
    failed: int
    bounced: int
    retrying: int
    failures: list[FailureRow]


def status_counts(session: Session, now: dt.datetime) -> dict[str, int]:
    """Subscribers by status; 'paused' = active with a pause holding at `now` on their own
    calendar (`schedule_rule.pause_holds`, as the person and preference pages say)."""
    counts = dict.fromkeys(STATUS_ORDER, 0)
    for status, n in session.execute(
        select(Subscriber.status, func.count()).group_by(Subscriber.status)
    ):
        counts[status] = counts.get(status, 0) + int(n)
    paused = paused_count(session, now)
    counts["paused"] = paused
    counts["active"] = counts.get(ACTIVE, 0) - paused
    counts.setdefault(PENDING, 0)
    return counts


def paused_count(session: Session, now: dt.datetime) -> int:
    """Active readers whose pause holds at `now` in their zone. Every zone's date is within a
    day of UTC's, so a pause ending after tomorrow (UTC) holds everywhere and one that ended
    before today (UTC) nowhere: SQL counts the first; the few ending today or tomorrow (UTC)
    are checked one by one in Python, by the rule."""
    today = now.astimezone(dt.UTC).date()
    tomorrow = today + dt.timedelta(days=1)
    active = Subscriber.status == ACTIVE
    later = session.scalar(select(func.count()).where(active, Subscriber.paused_until > tomorrow))
    edge = session.execute(
        select(Subscriber.timezone, Subscriber.paused_until).where(
            active, Subscriber.paused_until.between(today, tomorrow)
        )
    )
    near = sum(rule.pause_holds(rule.Reader(zone, paused_until=until), now) for zone, until in edge)
    return int(later or 0) + near


def week_ahead(session: Session, now: dt.datetime, zone: str, days: int = 7) -> list[Day]:
    """The next `days` days (in `zone`), each with its cohorts: series, part, how many people —
    the calendar's projection (`store.calendar.sends`, the schedule rule), summed per day."""
    tz = ZoneInfo(zone)
    today = now.astimezone(tz).date()
    end = dt.datetime.combine(today + dt.timedelta(days=days), dt.time(0), tz).astimezone(dt.UTC)
    grouped: dict[tuple[dt.date, str, int], _Acc] = {}
    for send in calendar.sends(session, now, end):
        local_day = send.at.astimezone(tz).date()
        acc = grouped.setdefault(
            (local_day, send.series_slug, send.part_number),
            _Acc(send.series_title, send.part_title, 0, send.at),
        )
        acc.count += send.count
        acc.first = min(acc.first, send.at)
    result = [Day(today + dt.timedelta(days=i)) for i in range(days)]
    by_date = {d.date: d for d in result}
    for (day, slug, part_no), acc in sorted(
        grouped.items(), key=lambda kv: (kv[0][0], kv[1].first)
    ):
        if day in by_date:
            by_date[day].cohorts.append(
                Cohort(slug, acc.title, part_no, acc.part_title, acc.count, acc.first)
            )
    return result


def last_days(session: Session, now: dt.datetime, days: int = 7, limit: int = 50) -> Recent:
    """Sent / failed / bounced in the last `days` days, and the failures themselves."""
    since = now - dt.timedelta(days=days)
    outcomes = ledger.outcomes_since(session, since)
    bounced = session.scalar(
        select(func.count(func.distinct(ProviderEvent.delivery_id))).where(
            ProviderEvent.event_type.in_(BOUNCE_EVENTS), ProviderEvent.occurred_at >= since
        )
    )
    failures = ledger.failures_since(session, since, BOUNCE_EVENTS, limit)
    return Recent(
        sent=outcomes.sent,
        failed=outcomes.failed,
        bounced=int(bounced or 0),
        retrying=outcomes.retrying,
        failures=failures,
    )


def sending_halted(session: Session) -> str | None:
    """Why sending is stopped (DELIVERY's halt switch, set on refused credentials), or None."""
    halt = halted(session)
    if halt is None:
        return None
    return f"{halt.reason} (since {halt.at:%Y-%m-%d %H:%M} UTC)"


def _eligible() -> list[Any]:
    return [
        Enrollment.state == ENROLLED_ACTIVE,
        Enrollment.next_due_at.is_not(None),
        Subscriber.status == ACTIVE,
        Series.state == "live",
    ]


def next_send(session: Session, now: dt.datetime) -> Cohort | None:
    """The next article to go out (however far ahead): series, part, people that day."""
    today = now.date()
    base = (
        select(Enrollment.next_due_at, Enrollment.next_part, Series.id, Series.slug, Series.title)
        .join(Series, Series.id == Enrollment.series_id)
        .join(Subscriber, Subscriber.id == Enrollment.subscriber_id)
        .where(
            *_eligible(), or_(Subscriber.paused_until.is_(None), Subscriber.paused_until <= today)
        )
    )
    first = session.execute(base.order_by(Enrollment.next_due_at).limit(1)).first()
    if first is None:
        return None
    due, part_no, series_id, slug, title = first
    if due is None:
        return None
    count: int | None = session.scalar(
        select(func.count(Enrollment.id))
        .join(Series, Series.id == Enrollment.series_id)
        .join(Subscriber, Subscriber.id == Enrollment.subscriber_id)
        .where(
            *_eligible(),
            Enrollment.series_id == series_id,
            Enrollment.next_part == part_no,
            Enrollment.next_due_at < due + dt.timedelta(days=1),
        )
    )
    part_title = session.scalar(
        select(Part.title).where(Part.series_id == series_id, Part.number == part_no)
    )
    return Cohort(slug, title, part_no, part_title or f"Part {part_no}", int(count or 0), due)


@dataclass(frozen=True)
class SeriesNext:
    part: int
    count: int
    at: dt.datetime


def next_by_series(session: Session) -> dict[int, SeriesNext]:
    """series id -> its soonest part due, for how many people, from when."""
    result: dict[int, SeriesNext] = {}
    for series_id, part_no, first, n in session.execute(
        select(
            Enrollment.series_id,
            Enrollment.next_part,
            func.min(Enrollment.next_due_at),
            func.count(Enrollment.id),
        )
        .join(Series, Series.id == Enrollment.series_id)
        .join(Subscriber, Subscriber.id == Enrollment.subscriber_id)
        .where(*_eligible())
        .group_by(Enrollment.series_id, Enrollment.next_part)
    ):
        current = result.get(series_id)
        if first is not None and (current is None or first < current.at):
            result[series_id] = SeriesNext(int(part_no), int(n), first)
    return result


@dataclass
class QueueCounts:
    """Per series, from one pass over the active readers' enrollments (the series page's
    numbers: each used to be its own pass, and the queue form's two per series)."""

    waiting: dict[int, dict[int, int]]  # series id -> {next part: readers}; 0 = finished
    upcoming: dict[int, SeriesNext]  # series id -> soonest part due (live series only)
    enrolled: dict[tuple[int, bool], int]  # (series id, takes new series) -> readers in it


def queue_counts(session: Session) -> QueueCounts:
    """`part_counts`, `next_by_series` and who is in each series, in one GROUP BY query."""
    live = set(session.scalars(select(Series.id).where(Series.state == "live")))
    waiting: dict[int, dict[int, int]] = {}
    soonest: dict[tuple[int, int], SeriesNext] = {}
    enrolled: dict[tuple[int, bool], int] = {}
    for series_id, state, part_no, takes, n, due_n, first in session.execute(
        select(
            Enrollment.series_id,
            Enrollment.state,
            Enrollment.next_part,
            Subscriber.takes_new_series,
            func.count(),
            func.count(Enrollment.next_due_at),
            func.min(Enrollment.next_due_at),
        )
        .join(Subscriber, Subscriber.id == Enrollment.subscriber_id)
        .where(Subscriber.status == ACTIVE)
        .group_by(
            Enrollment.series_id,
            Enrollment.state,
            Enrollment.next_part,
            Subscriber.takes_new_series,
        )
    ):
        key = (series_id, bool(takes))
        enrolled[key] = enrolled.get(key, 0) + int(n)
        if state != "cancelled":
            bucket = waiting.setdefault(series_id, {})
            number = 0 if state == "finished" else int(part_no)
            bucket[number] = bucket.get(number, 0) + int(n)
        if state == ENROLLED_ACTIVE and series_id in live and first is not None:
            current = soonest.get((series_id, int(part_no)))
            soonest[(series_id, int(part_no))] = SeriesNext(
                int(part_no),
                int(due_n) + (current.count if current else 0),
                first if current is None else min(first, current.at),
            )
    upcoming: dict[int, SeriesNext] = {}
    for (series_id, _part), nxt in soonest.items():
        current = upcoming.get(series_id)
        if current is None or nxt.at < current.at:
            upcoming[series_id] = nxt
    return QueueCounts(waiting, upcoming, enrolled)


def active_by_choice(session: Session) -> dict[bool, int]:
    """takes_new_series -> active readers (the queue form's 'adds' / 'left out' totals)."""
    return {
        bool(takes): int(n)
        for takes, n in session.execute(
            select(Subscriber.takes_new_series, func.count())
            .where(Subscriber.status == ACTIVE)
            .group_by(Subscriber.takes_new_series)
        )
    }


def part_counts(session: Session) -> dict[int, dict[int, int]]:
    """series id -> {next part number: active subscribers waiting for it}; 0 = finished."""
    result: dict[int, dict[int, int]] = {}
    for series_id, state, part_no, n in session.execute(
        select(Enrollment.series_id, Enrollment.state, Enrollment.next_part, func.count())
        .join(Subscriber, Subscriber.id == Enrollment.subscriber_id)
        .where(Subscriber.status == ACTIVE)
        .group_by(Enrollment.series_id, Enrollment.state, Enrollment.next_part)
    ):
        key = 0 if state == "finished" else int(part_no)
        if state == "cancelled":
            continue
        bucket = result.setdefault(series_id, {})
        bucket[key] = bucket.get(key, 0) + int(n)
    return result


# (series id, part number) -> readers sent it: the ledger's named read, under the name the
# views know it by
sent_counts = ledger.sent_per_part
