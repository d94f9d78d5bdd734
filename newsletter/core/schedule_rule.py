"""The schedule rule: when each of a reader's parts goes out — pure values in, moments out.

The one home of the slot/cadence/pause rule and the broadcast day rule (no database, no Redis,
no clock: `now` is always passed in). The engine asks it when a reader's next part is due
(enrollment, advance, the broadcasts' day rule) and every view asks it what a reader gets over
the coming weeks (`project`: the calendar, a person's page, the dashboard's week, the
preference and confirmation pages, the API), so what the therapist is shown is what is sent.

- A slot is the series' send day and time in the reader's zone (`core.timing`); parts are one
  cadence apart, the cadence being the slower of the reader's and the series'.
- `paused_until` (a local date) holds every slot back until that date; a series' `not_before`
  (its start date) likewise.
- A send more than a day after its slot counts the cadence from the day before the real send.
- A series part due on a local day that holds one of the reader's broadcasts goes the next day
  at the same local time; its ledger row keeps the usual slot, so the cadence counts from the
  slot and the parts after it stay on their weekday.
- When a series ends, the next queued series starts at its first slot after the last part, at
  least one cadence later, never before its start date.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from newsletter.core import timing
from newsletter.core.vocabulary import CADENCES, WEEKLY

ONE_DAY = dt.timedelta(days=1)


@dataclass(frozen=True)
class Reader:
    """What the rule needs of a subscriber: their zone, cadence and pause (a local date)."""

    zone: str
    cadence: str = WEEKLY
    paused_until: dt.date | None = None


@dataclass(frozen=True)
class SeriesTimes:
    """What the rule needs of a series: its key (the id), day (0 = Monday), local time,
    cadence and number of parts."""

    key: int
    send_day: int
    send_time: str
    cadence: str = WEEKLY
    parts: int = 0


@dataclass(frozen=True)
class Place:
    """A reader's place in one series of their queue: the next part, when it is due (the
    active series; None for one still waiting) and the series' start date for them."""

    series: SeriesTimes
    next_part: int = 1
    due: dt.datetime | None = None
    not_before: dt.date | None = None


@dataclass(frozen=True)
class Letter:
    """One of the reader's broadcasts: its series key and when it is due for them."""

    key: int
    due: dt.datetime


@dataclass(frozen=True)
class Queue:
    """Everything the projection needs of one reader (or of a group of readers alike): the
    active place first, then the series waiting behind it in queue order; their broadcasts
    still to come; local dates already taken by a broadcast in flight or sent."""

    reader: Reader
    places: tuple[Place, ...] = ()
    letters: tuple[Letter, ...] = ()
    taken: frozenset[dt.date] = field(default_factory=frozenset)


class Send(NamedTuple):
    """One projected send: (series key, part number, UTC moment)."""

    key: int
    part: int
    at: dt.datetime


class Way(NamedTuple):
    """The broadcast day rule for one due part: `moved_to` a later moment (not sent now), or
    sent with its ledger row for `slot`."""

    moved_to: dt.datetime | None
    slot: dt.datetime


def aware(value: dt.datetime) -> dt.datetime:
    """`value` as an aware UTC time (the database hands back naive UTC on some backends)."""
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value


def cadence_weeks(reader: Reader, series: SeriesTimes) -> int:
    """Weeks between parts: the slower of the reader's preference and the series' cadence."""
    return max(CADENCES.get(reader.cadence, 1), CADENCES.get(series.cadence, 1))


def local_today(reader: Reader, now: dt.datetime) -> dt.date:
    """`now`'s date in the reader's zone (what a pause date is compared with)."""
    return timing.local_date(now, reader.zone)


def pause_holds(reader: Reader, now: dt.datetime) -> bool:
    """True while the reader's pause holds: `now`'s date in their zone is before
    `paused_until` (the check the engine makes at send time, and every page shows)."""
    return reader.paused_until is not None and local_today(reader, now) < reader.paused_until


def slot_after(
    reader: Reader,
    series: SeriesTimes,
    after: dt.datetime,
    previous: dt.datetime | None = None,
    not_before: dt.date | None = None,
) -> dt.datetime:
    """The first slot of `series` for `reader` strictly after `after`, at least one cadence
    after `previous` (the slot of the last part they got), on or after the pause and start."""
    return timing.next_slot(
        after,
        reader.zone,
        series.send_day,
        series.send_time,
        cadence_weeks(reader, series),
        paused_until=reader.paused_until,
        previous=previous,
        not_before=not_before,
    )


def is_due(due: dt.datetime, now: dt.datetime) -> bool:
    """True when a part due at `due` may go out at `now` (what a tick claims)."""
    return aware(due) <= now


def cadence_anchor(slot: dt.datetime, now: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    """(previous, after) for the slot after a send at `now` of the part whose ledger slot is
    `slot`: a send more than a day late counts from the day before the real send."""
    late = now - slot > ONE_DAY
    return (now - ONE_DAY if late else slot), max(now, slot)


def after_send(
    reader: Reader,
    series: SeriesTimes,
    not_before: dt.date | None,
    slot: dt.datetime,
    now: dt.datetime,
) -> dt.datetime:
    """When the next part of the same series is due after one for `slot` went out at `now`."""
    previous, after = cadence_anchor(slot, now)
    return slot_after(reader, series, after, previous, not_before)


def make_way(zone: str, due: dt.datetime, send_day: int, taken: Iterable[dt.date]) -> Way:
    """The broadcast day rule for a series part due at `due`, for a reader whose broadcasts
    take the local dates `taken`: on such a day it moves to the same local time the next day;
    on the day after one (moved here, off its weekday) its ledger row keeps the usual slot."""
    days = taken if isinstance(taken, (set, frozenset)) else set(taken)
    local = due.astimezone(timing.zone_info(zone))
    day = local.date()
    if day in days:
        return Way(timing.local_instant(day + ONE_DAY, local.time(), zone), due)
    if day - ONE_DAY in days and day.weekday() != send_day:
        return Way(None, timing.local_instant(day - ONE_DAY, local.time(), zone))
    return Way(None, due)


def settle(
    zone: str, due: dt.datetime, send_day: int, taken: frozenset[dt.date]
) -> tuple[dt.datetime, dt.datetime]:
    """(when it goes out, its ledger slot): `make_way` applied until the part is not moved."""
    way = make_way(zone, due, send_day, taken)
    while way.moved_to is not None:
        due = way.moved_to
        way = make_way(zone, due, send_day, taken)
    return due, way.slot


def letter_goes(reader: Reader, letter: Letter, now: dt.datetime) -> bool:
    """A broadcast goes out unless the reader is paused when it comes due (then it is
    cancelled: a one-off letter is about its moment)."""
    return not pause_holds(reader, max(aware(letter.due), now))


def taken_days(queue: Queue) -> frozenset[dt.date]:
    """The local dates the reader's broadcasts take (waiting, in flight or sent)."""
    zone = queue.reader.zone
    return queue.taken | {timing.local_date(aware(x.due), zone) for x in queue.letters}


def next_send(queue: Queue, now: dt.datetime) -> Send | None:
    """The reader's next send (a part or a broadcast), None when nothing is coming."""
    return next(iter(project(queue, now, limit=1)), None)


def project(
    queue: Queue, now: dt.datetime, end: dt.datetime | None = None, limit: int | None = None
) -> list[Send]:
    """What the reader gets from `now` until `end` (or their first `limit` sends), in time
    order: their broadcasts, the active series' remaining parts and each series behind it, as
    the engine sends them when a tick runs at every moment. Overdue parts show at `now`."""
    reader = queue.reader
    out: list[Send] = [
        Send(x.key, 1, max(aware(x.due), now)) for x in queue.letters if letter_goes(reader, x, now)
    ]
    taken = taken_days(queue)
    out.extend(_parts(reader, queue.places, taken, now, end, limit))
    out = [s for s in out if end is None or s.at < end]
    out.sort(key=lambda s: (s.at, s.key, s.part))
    return out if limit is None else out[:limit]


def _parts(
    reader: Reader,
    places: Sequence[Place],
    taken: frozenset[dt.date],
    now: dt.datetime,
    end: dt.datetime | None,
    limit: int | None,
) -> Iterable[Send]:
    """The series parts: the active place from its due time, then the places behind it."""
    if not places or places[0].due is None:
        return  # nothing active (or held): the engine places nothing behind it either
    due: dt.datetime | None = aware(places[0].due)
    previous: dt.datetime | None = None
    after = now
    count = 0
    for place in places:
        series = place.series
        if place.next_part > series.parts:
            due = None  # finished: the next one starts at its first slot
            continue
        if due is None:  # a series waiting behind: starts at its first slot after the last
            due = slot_after(reader, series, after, previous, place.not_before)
        for part in range(place.next_part, series.parts + 1):
            moment, slot = settle(reader.zone, due, series.send_day, taken)
            moment = max(moment, now)
            if (end is not None and moment >= end) or (limit is not None and count >= limit):
                return
            yield Send(series.key, part, moment)
            count += 1
            previous, after = cadence_anchor(slot, moment)
            due = slot_after(reader, series, after, previous, place.not_before)
        due = None
