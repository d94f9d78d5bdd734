"""Slots: cadence arithmetic for a subscriber's next article time — pure, no database.

The cadence is the slower of the series' and the subscriber's; slots fall on the series' send
day and time in the subscriber's zone (`core.timing`); `paused_until` holds them back; a send
more than a day late counts from the day before the real send.
"""

from __future__ import annotations

import datetime as dt

from newsletter.core import timing
from newsletter.store.models import CADENCES, Series, Subscriber


def cadence_weeks(subscriber: Subscriber, series: Series) -> int:
    """Weeks between parts: the slower of the subscriber's preference and the series' cadence."""
    return max(CADENCES.get(subscriber.cadence, 1), CADENCES.get(series.cadence, 1))


def aware(value: dt.datetime) -> dt.datetime:
    """`value` as an aware UTC time (the database hands back naive UTC on some backends)."""
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value


def slot_for(
    subscriber: Subscriber,
    series: Series,
    after: dt.datetime,
    previous: dt.datetime | None,
    not_before: dt.date | None = None,
) -> dt.datetime:
    """The next slot of `series` for `subscriber` strictly after `after`."""
    return timing.next_slot(
        after,
        subscriber.timezone,
        series.send_day,
        series.send_time,
        cadence_weeks(subscriber, series),
        paused_until=subscriber.paused_until,
        previous=previous,
        not_before=not_before,
    )


def is_due(next_due_at: dt.datetime, now: dt.datetime) -> bool:
    """True when a part due at `next_due_at` may go out at `now` (what a tick claims)."""
    return aware(next_due_at) <= now


def pause_holds(subscriber: Subscriber, now: dt.datetime) -> bool:
    """True while the subscriber's pause holds: `now`'s date in their zone is before
    `paused_until` (the check dispatch makes at send time)."""
    return (
        subscriber.paused_until is not None
        and timing.local_date(now, subscriber.timezone) < subscriber.paused_until
    )


def cadence_anchor(sent_slot: dt.datetime, now: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    """(previous, after) for the slot after a send at `now` of the part due at `sent_slot`."""
    late = now - sent_slot > dt.timedelta(days=1)
    return (now - dt.timedelta(days=1) if late else sent_slot), max(now, sent_slot)


def next_part_due(
    subscriber: Subscriber,
    series: Series,
    not_before: dt.date | None,
    sent_slot: dt.datetime,
    now: dt.datetime,
) -> dt.datetime:
    """When the next part of the same series is due after one went out (as `advance` computes;
    for bulk callers). A pure function of its arguments."""
    previous, after = cadence_anchor(sent_slot, now)
    return slot_for(subscriber, series, after, previous, not_before)
