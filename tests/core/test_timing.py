"""Calendar maths: slots strictly increase, one cadence apart locally, at local send time, DST-safe."""

from __future__ import annotations

import datetime as dt
import itertools
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from newsletter.core.timing import local_instant, next_slot, parse_time, slots

ZONES = [
    "America/New_York",
    "Europe/London",
    "Australia/Sydney",
    "Asia/Kolkata",
    "Pacific/Chatham",
    "UTC",
]

zones = st.sampled_from(ZONES)
instants = st.datetimes(
    min_value=dt.datetime(2025, 1, 1),
    max_value=dt.datetime(2031, 12, 31),
    timezones=st.just(dt.UTC),
)
send_times = st.builds(
    lambda h, m: f"{h:02d}:{m:02d}", st.integers(0, 23), st.sampled_from([0, 15, 30, 45])
)


def wall_exists(day: dt.date, at: dt.time, zone: str) -> bool:
    tz = ZoneInfo(zone)
    wall = dt.datetime.combine(day, at)
    return (
        dt.datetime.combine(day, at, tzinfo=tz)
        .astimezone(dt.UTC)
        .astimezone(tz)
        .replace(tzinfo=None)
        == wall
    )


@settings(max_examples=300, deadline=None)
@given(
    start=instants,
    zone=zones,
    send_day=st.integers(0, 6),
    send_time=send_times,
    cadence=st.sampled_from([1, 2]),
)
def test_slots_increase_one_cadence_apart_at_local_send_time(
    start: dt.datetime, zone: str, send_day: int, send_time: str, cadence: int
) -> None:
    tz = ZoneInfo(zone)
    at = parse_time(send_time)
    series = slots(start, zone, send_day, send_time, cadence, 12)
    assert series[0] > start
    # first slot: nothing earlier on a send day after start
    assert series[0] - start <= dt.timedelta(days=7, hours=3)
    for a, b in itertools.pairwise(series):
        assert b > a
        assert (b.astimezone(tz).date() - a.astimezone(tz).date()).days == 7 * cadence
    for slot in series:
        local = slot.astimezone(tz)
        assert local.weekday() == send_day
        if wall_exists(local.date(), at, zone):
            assert local.time().replace(tzinfo=None) == at
        else:  # spring forward: the first valid minute after the missing wall time
            assert local.time() > at
            before = (slot - dt.timedelta(minutes=1)).astimezone(tz)
            assert before.time() < at or before.date() < local.date()


@settings(max_examples=200, deadline=None)
@given(after=instants, zone=zones, send_day=st.integers(0, 6), send_time=send_times)
def test_next_slot_is_the_first_after(
    after: dt.datetime, zone: str, send_day: int, send_time: str
) -> None:
    slot = next_slot(after, zone, send_day, send_time)
    assert slot > after
    tz = ZoneInfo(zone)
    # one week earlier (same wall time) is not after `after`
    prev_day = slot.astimezone(tz).date() - dt.timedelta(weeks=1)
    assert local_instant(prev_day, parse_time(send_time), zone) <= after


@settings(max_examples=150, deadline=None)
@given(
    after=instants,
    zone=zones,
    pause_days=st.integers(0, 90),
)
def test_paused_until_is_respected(after: dt.datetime, zone: str, pause_days: int) -> None:
    tz = ZoneInfo(zone)
    until = after.astimezone(tz).date() + dt.timedelta(days=pause_days)
    slot = next_slot(after, zone, 1, "09:00", paused_until=until)
    assert slot.astimezone(tz).date() >= until
    assert slot.astimezone(tz).date() - until <= dt.timedelta(days=7)


@pytest.mark.parametrize(
    ("zone", "day", "wall", "expected_local"),
    [
        # spring forward: 02:30 does not exist -> 03:00
        ("America/New_York", dt.date(2027, 3, 14), "02:30", "03:00"),
        ("Europe/London", dt.date(2027, 3, 28), "01:30", "02:00"),
        ("Australia/Sydney", dt.date(2027, 10, 3), "02:15", "03:00"),
        ("Pacific/Chatham", dt.date(2027, 9, 26), "03:00", "03:45"),
        # normal days
        ("America/New_York", dt.date(2027, 3, 16), "09:00", "09:00"),
        ("Asia/Kolkata", dt.date(2027, 3, 16), "09:00", "09:00"),
    ],
)
def test_gap_moves_to_first_valid_minute(
    zone: str, day: dt.date, wall: str, expected_local: str
) -> None:
    got = local_instant(day, parse_time(wall), zone).astimezone(ZoneInfo(zone))
    assert got.date() == day
    assert f"{got:%H:%M}" == expected_local


@pytest.mark.parametrize(
    ("zone", "day", "wall"),
    [
        ("America/New_York", dt.date(2027, 11, 7), "01:30"),
        ("Europe/London", dt.date(2027, 10, 31), "01:30"),
        ("Australia/Sydney", dt.date(2027, 4, 4), "02:30"),
        ("Pacific/Chatham", dt.date(2027, 4, 4), "03:00"),
    ],
)
def test_ambiguous_wall_time_is_sent_once_at_the_first(zone: str, day: dt.date, wall: str) -> None:
    tz = ZoneInfo(zone)
    at = parse_time(wall)
    got = local_instant(day, at, zone)
    first = dt.datetime.combine(day, at, tzinfo=tz).replace(fold=0).astimezone(dt.UTC)
    second = dt.datetime.combine(day, at, tzinfo=tz).replace(fold=1).astimezone(dt.UTC)
    assert second > first  # really ambiguous
    assert got == first
    # a tick at the second occurrence finds the next week's slot, not this one again
    assert next_slot(got, zone, day.weekday(), wall) > second


def test_weekly_across_us_dst_stays_at_nine_local() -> None:
    zone = "America/New_York"
    start = dt.datetime(2027, 3, 1, tzinfo=dt.UTC)
    series = slots(start, zone, 1, "09:00", 1, 4)  # Tuesdays 2, 9, 16, 23 March 2027
    hours_utc = [s.hour for s in series]
    assert hours_utc == [14, 14, 13, 13]  # EST then EDT (change on 14 March)
    assert all(s.astimezone(ZoneInfo(zone)).hour == 9 for s in series)


def test_cadence_gap_from_previous_slot() -> None:
    zone = "Europe/London"
    previous = dt.datetime(2027, 3, 2, 9, tzinfo=dt.UTC)
    # sent late (beat down for a day): next is still one week after the slot, not after the send
    nxt = next_slot(
        dt.datetime(2027, 3, 3, 12, tzinfo=dt.UTC), zone, 1, "09:00", 1, previous=previous
    )
    assert nxt == dt.datetime(2027, 3, 9, 9, tzinfo=dt.UTC)
    two = next_slot(previous, zone, 1, "09:00", 2, previous=previous)
    assert two == dt.datetime(2027, 3, 16, 9, tzinfo=dt.UTC)
