"""The send calendar: its counts and lists of people match what ticks really send, day by day."""

from __future__ import annotations

import datetime as dt

import pytest
from engine_support import add_person, ship, utc
from sqlalchemy import event, select

from newsletter.core import schedule_rule as rule
from newsletter.core.config import Settings
from newsletter.engine.tick import tick
from newsletter.queue.dueset import RedisQueue
from newsletter.store import calendar
from newsletter.store.db import get_engine, session_scope
from newsletter.store.models import Delivery, Series, Subscriber

NOW = utc(2027, 1, 4, 12)  # Monday
ZONES = ["Europe/London", "America/New_York", "Asia/Tokyo", "Pacific/Auckland", "Europe/London"]


def _sent(settings: Settings) -> set[tuple[int, str, int]]:
    with session_scope(settings.database_url) as session:
        rows = session.execute(
            select(Delivery.subscriber_id, Series.slug, Delivery.part_number).join(
                Series, Series.id == Delivery.series_id
            )
        )
        return {(int(sid), slug, int(n)) for sid, slug, n in rows}


def test_the_calendar_lists_exactly_who_each_tick_sends_to(settings: Settings) -> None:
    ship(settings, NOW)
    for zone in ZONES:
        add_person(settings, NOW, zone)
    add_person(settings, NOW, "America/Los_Angeles", cadence="fortnightly")
    with session_scope(settings.database_url) as session:
        days = calendar.upcoming(session, NOW, "America/New_York", weeks=5)
        expected: dict[dt.datetime, set[tuple[int, str, int]]] = {}
        for day in days:
            for send in day.sends:
                series = session.scalar(select(Series).where(Series.slug == send.series_slug))
                assert series is not None
                count, people = calendar.people(session, series, send.part_number, send.at, NOW)
                assert count == send.count == len(people)
                assert sum(send.zones.values()) == send.count
                expected.setdefault(send.at, set()).update(
                    (p.id, send.series_slug, send.part_number) for p in people
                )
    assert len(expected) >= 8  # several zones, several weeks
    # Tuesday 09:00 in Tokyo is Monday evening in New York: shown on the New York day.
    tokyo = next(d for d in days if any(s.zones.get("Asia/Tokyo") for s in d.sends))
    assert tokyo.date.weekday() == 0
    # Myths has 4 parts: 5 weekly readers get all 4 in 5 weeks, the fortnightly one 3 of them.
    assert sum(s.count for d in days for s in d.sends if s.series_slug.startswith("myths")) == 23

    seen: set[tuple[int, str, int]] = set()
    for at in sorted(expected):
        tick(settings, at)
        sent = _sent(settings) - seen
        assert sent == expected[at], at
        seen |= sent


def test_the_calendar_is_a_few_queries_whatever_the_number_of_readers(
    settings: Settings,
) -> None:
    ship(settings, NOW)
    for i in range(40):
        add_person(settings, NOW, ZONES[i % len(ZONES)])
    statements: list[str] = []
    engine = get_engine(settings.database_url)

    def count(*args: object) -> None:
        statements.append(str(args[2]))

    event.listen(engine, "before_cursor_execute", count)
    try:
        with session_scope(settings.database_url) as session:
            days = calendar.upcoming(session, NOW, "Europe/London", weeks=4)
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert sum(d.total for d in days) > 40
    assert len(statements) <= 5, statements


def test_a_person_sees_the_dates_of_each_series_in_their_queue(settings: Settings) -> None:
    ship(settings, NOW)
    sid = add_person(settings, NOW, "Europe/London")
    with session_scope(settings.database_url) as session:
        person = session.get(Subscriber, sid)
        assert person is not None
        queue = calendar.person_queue(session, person, NOW)
        slugs = {s.id: s.slug for s in session.scalars(select(Series))}
    by_slug: dict[str, list[tuple[int, dt.datetime]]] = {}
    for key, part, at in rule.project(queue, NOW, NOW + dt.timedelta(weeks=60)):
        by_slug.setdefault(slugs[key], []).append((part, at))
    myths = by_slug["myths-about-psychotherapy"]
    co = by_slug["co-created-process"]
    assert [n for n, _ in myths] == [1, 2, 3, 4] and [n for n, _ in co] == [1, 2]
    assert myths[0][1] == utc(2027, 1, 5, 9)  # Tuesday 09:00 in London
    assert co[0][1] == myths[-1][1] + dt.timedelta(days=7)  # one week after the last Myths part


def test_a_series_queued_behind_another_keeps_its_chosen_start_date(settings: Settings) -> None:
    from newsletter.engine import series_queue

    ship(settings, NOW, queue=False)
    ids = {add_person(settings, NOW, "Europe/London") for _ in range(2)}  # nothing live yet
    with session_scope(settings.database_url) as session:
        series_queue.queue_series(session, "myths-about-psychotherapy", None, NOW)
        series_queue.queue_series(session, "co-created-process", dt.date(2027, 2, 20), NOW)
    with session_scope(settings.database_url) as session:
        RedisQueue(settings).rebuild(session)
    with session_scope(settings.database_url) as session:
        days = calendar.upcoming(session, NOW, "Europe/London", weeks=9)
        co = [
            (send.at, send.part_number, send.count)
            for day in days
            for send in day.sends
            if send.series_slug == "co-created-process"
        ]
        series = session.scalar(select(Series).where(Series.slug == "co-created-process"))
        assert series is not None
        _, people = calendar.people(session, series, 1, co[0][0], NOW)
    # Myths ends on Tue 26 Jan; Co-Created waits for its start date: Tuesday 23 Feb, 09:00 UTC
    assert co == [(utc(2027, 2, 23, 9), 1, 2), (utc(2027, 3, 2, 9), 2, 2)]
    assert {p.id for p in people} == ids
    for moment in (
        utc(2027, 1, 5, 9),
        utc(2027, 1, 12, 9),
        utc(2027, 1, 19, 9),
        utc(2027, 1, 26, 9),
    ):
        tick(settings, moment)  # Myths, parts 1-4
    tick(settings, utc(2027, 2, 22, 9))  # nothing of Co-Created before its start
    assert not any(slug == "co-created-process" for _, slug, _ in _sent(settings))
    tick(settings, utc(2027, 2, 23, 9))
    assert {(sid, n) for sid, slug, n in _sent(settings) if slug.startswith("co")} == {
        (sid, 1) for sid in ids
    }


def test_readers_enrolled_in_bulk_are_listed_under_their_count(settings: Settings) -> None:
    """Readers enrolled in bulk (enrollment.enroll_new, as imports do) are listed under their
    count; the bulk path once stored SQLite text without microseconds ('…09:00:00'), and rows
    stored that way are still found (calendar._at)."""
    from scale_support import add_readers

    ship(settings, NOW)
    add_readers(settings, NOW, 12)  # enrolled with enrollment.enroll_new
    with session_scope(settings.database_url) as session:
        days = calendar.upcoming(session, NOW, "America/New_York", weeks=2)
        sends = [s for d in days for s in d.sends]
        assert sends
        for send in sends:
            series = session.scalar(select(Series).where(Series.slug == send.series_slug))
            assert series is not None
            count, people = calendar.people(session, series, send.part_number, send.at, NOW)
            assert count == send.count == len(people) > 0


def test_a_paused_series_waiting_in_a_queue_is_not_projected(settings: Settings) -> None:
    """The kept waiting queue holds every queued place, whatever its series' state; the
    calendar projects only the live ones, as the engine sends: Co-Created paused behind Myths
    shows no send, and Myths' own sends are unchanged."""
    ship(settings, NOW)
    for zone in ZONES[:3]:
        add_person(settings, NOW, zone)

    def sends() -> list[tuple[str, int, dt.datetime, int]]:
        with session_scope(settings.database_url) as session:
            found = calendar.sends(session, NOW, NOW + dt.timedelta(weeks=8))
            return sorted((s.series_slug, s.part_number, s.at, s.count) for s in found)

    live = sends()
    assert {slug for slug, *_ in live} == {"myths-about-psychotherapy", "co-created-process"}
    with session_scope(settings.database_url) as session:
        paused = session.scalar(select(Series).where(Series.slug == "co-created-process"))
        assert paused is not None
        paused.state = "paused"
    assert sends() == [s for s in live if s[0] == "myths-about-psychotherapy"]


def _shown(settings: Settings, now: dt.datetime, days: int) -> list[tuple[object, ...]]:
    """Every send of the next `days` days with its count, zones and people."""
    out: list[tuple[object, ...]] = []
    with session_scope(settings.database_url) as session:
        for send in calendar.sends(session, now, now + dt.timedelta(days=days)):
            series = session.scalar(select(Series).where(Series.slug == send.series_slug))
            assert series is not None
            count, people = calendar.people(session, series, send.part_number, send.at, now)
            assert count == send.count == len(people)
            ids = sorted(p.id for p in people)
            out.append((send.series_slug, send.part_number, send.at, send.zones, ids))
    return out


def test_a_near_view_in_two_steps_shows_what_the_whole_queues_show(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The week and a near count group first without the waiting queues, then only the groups
    whose active series runs out with them: the same sends, counts and people as grouping
    everyone with their whole queue."""
    import importlib

    grouping = importlib.import_module("newsletter.store.calendar.groups")  # the module

    ship(settings, NOW)
    for zone in ZONES:
        add_person(settings, NOW, zone)
    add_person(settings, NOW, "America/Los_Angeles", cadence="fortnightly")
    with session_scope(settings.database_url) as session:
        moments = sorted({s.at for s in calendar.sends(session, NOW, NOW + dt.timedelta(weeks=3))})
    for moment in moments:
        tick(settings, moment)  # weekly readers now on Myths' last part, one fortnightly behind
    later = moments[-1] + dt.timedelta(hours=1)
    for zone in ZONES[:3]:
        add_person(settings, later, zone)  # new readers: Myths' first part, no queue in reach
    with session_scope(settings.database_url) as session:
        cat = calendar.catalogue(session)
        week = grouping.groups(session, cat, later, later + dt.timedelta(days=7))
    assert any(g.by_queue for g in week) and any(not g.by_queue for g in week)
    near = {days: _shown(settings, later, days) for days in (1, 3, 7, 8)}
    monkeypatch.setattr(grouping, "SHORT", dt.timedelta(0))  # every view in one step
    for days, shown in near.items():
        assert shown == _shown(settings, later, days), days
