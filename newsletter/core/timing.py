"""Calendar maths: the next send slot in a subscriber's zone, DST-safe (zoneinfo, local calendar)."""

from __future__ import annotations

import datetime as dt
from functools import lru_cache
from zoneinfo import ZoneInfo

from newsletter.core.vocabulary import WEEKDAYS

DAYS = WEEKDAYS


def utcnow() -> dt.datetime:
    """The current moment, aware, in UTC (the one clock entry points and the store read)."""
    return dt.datetime.now(dt.UTC)


@lru_cache(maxsize=512)
def zone_info(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def parse_time(value: str) -> dt.time:
    """'09:00' -> time(9, 0); ValueError for anything else."""
    hours, _, minutes = value.partition(":")
    return dt.time(int(hours), int(minutes))


def local_instant(day: dt.date, at: dt.time, zone: str) -> dt.datetime:
    """The UTC instant of wall time `at` on local date `day` in `zone`.

    A wall time that does not exist (spring forward) moves to the first valid minute after it
    (the end of the gap); one that happens twice (fall back) is the first occurrence (fold=0).
    """
    tz = zone_info(zone)
    wall = dt.datetime.combine(day, at)
    first = wall.replace(tzinfo=tz, fold=0)
    utc = first.astimezone(dt.UTC)
    if utc.astimezone(tz).replace(tzinfo=None) == wall:
        return utc
    # In a gap: fold=1 reads the wall time with the offset after the change (earliest instant),
    # fold=0 with the offset before it (latest). The change lies in between; local times before
    # it are before the gap, from it on after the gap, so bisect (in minutes) for its instant.
    low = wall.replace(tzinfo=tz, fold=1).astimezone(dt.UTC)
    lo, hi = 0, int((utc - low).total_seconds() // 60)  # predicate false at lo, true at hi
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if (low + dt.timedelta(minutes=mid)).astimezone(tz).replace(tzinfo=None) > wall:
            hi = mid
        else:
            lo = mid
    return low + dt.timedelta(minutes=hi)


def local_date(instant: dt.datetime, zone: str) -> dt.date:
    """The calendar date of `instant` in `zone`."""
    return instant.astimezone(zone_info(zone)).date()


def next_slot(
    after: dt.datetime,
    zone: str,
    send_day: int,
    send_time: str,
    cadence_weeks: int = 1,
    paused_until: dt.date | None = None,
    previous: dt.datetime | None = None,
    not_before: dt.date | None = None,
) -> dt.datetime:
    """The first send slot strictly after `after` (aware), as an aware UTC datetime.

    A slot is local date with weekday `send_day` (0 = Monday) at `send_time` in `zone`.
    `previous`: the slot of the last article this subscriber got; the next one is at least
    `cadence_weeks` later in local calendar terms (so slots are exactly one cadence apart when
    nothing else intervenes). `paused_until` and `not_before` are local dates: no slot before them.
    """
    if after.tzinfo is None:
        raise ValueError("after must be an aware datetime")
    at = parse_time(send_time)
    earliest = after.astimezone(zone_info(zone)).date()
    if previous is not None:
        earliest = max(
            earliest, local_date(previous, zone) + dt.timedelta(weeks=max(1, cadence_weeks))
        )
    for bound in (paused_until, not_before):
        if bound is not None:
            earliest = max(earliest, bound)
    day = earliest + dt.timedelta(days=(send_day - earliest.weekday()) % 7)
    while True:
        slot = local_instant(day, at, zone)
        if slot > after:
            return slot
        day += dt.timedelta(weeks=1)


def slots(
    start: dt.datetime,
    zone: str,
    send_day: int,
    send_time: str,
    cadence_weeks: int,
    count: int,
) -> list[dt.datetime]:
    """`count` consecutive slots: the first strictly after `start`, then one cadence apart."""
    out: list[dt.datetime] = []
    previous: dt.datetime | None = None
    after = start
    for _ in range(count):
        slot = next_slot(after, zone, send_day, send_time, cadence_weeks, previous=previous)
        out.append(slot)
        previous = after = slot
    return out


def describe(instant: dt.datetime, zone: str) -> str:
    """Human text like 'Tuesday 3 March 2026 at 09:00 (Europe/London)'."""
    local = instant.astimezone(zone_info(zone))
    return f"{local:%A} {local.day} {local:%B %Y} at {local:%H:%M} ({zone})"
