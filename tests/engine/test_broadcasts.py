"""Broadcasts in the engine: once per reader, suppression and pauses at send time, cancel,
a lost Redis, the queue rules untouched, the series part kept off a broadcast's day, and a
dated broadcast at each reader's own slot on that local date (far from UTC, across DST)."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from engine_support import add_person, enrollments, lose_redis, ship, utc
from sqlalchemy import select

from newsletter.content.letter import letter
from newsletter.core.config import Settings
from newsletter.engine.tick import tick
from newsletter.services import broadcasts
from newsletter.store.db import session_scope
from newsletter.store.models import (
    CANCELLED,
    SENT,
    UNSUBSCRIBED,
    Delivery,
    Enrollment,
    Series,
    Subscriber,
)

CHATHAM, KOLKATA, LOS_ANGELES = "Pacific/Chatham", "Asia/Kolkata", "America/Los_Angeles"

MONDAY = utc(2027, 2, 1, 12, 0)
NOTE = letter("A new group in March", "Details inside.", "A group starts in March.\n")


def _create(settings: Settings, when: str, audience: str = "all") -> broadcasts.BroadcastInfo:
    return broadcasts.create(
        settings,
        NOTE,
        broadcasts.parse_audience(audience),
        broadcasts.parse_when(when, settings, MONDAY),
        in_archive=False,
        now=MONDAY,
    )


def _sent(settings: Settings, slug: str) -> list[int | None]:
    with session_scope(settings.database_url) as session:
        return list(
            session.scalars(
                select(Delivery.subscriber_id)
                .join(Series, Series.id == Delivery.series_id)
                .where(Series.slug == slug, Delivery.status == SENT)
                .order_by(Delivery.subscriber_id)
            )
        )


def test_now_goes_once_to_each_active_reader_and_survives_a_lost_redis(
    settings: Settings,
) -> None:
    ship(settings, MONDAY)
    people = [add_person(settings, MONDAY, z) for z in ("Europe/London", "America/Chicago")]
    info = _create(settings, "now")
    assert info.recipients == 2
    assert tick(settings, MONDAY).sent == 2
    lose_redis(settings)  # Redis is derived state
    for minutes in (1, 2, 60):
        assert tick(settings, MONDAY + dt.timedelta(minutes=minutes)).sent == 0
    assert _sent(settings, info.slug) == sorted(people)
    done = broadcasts.get(settings, info.id)
    assert done is not None and (done.state, done.sent) == ("sent", 2)


def test_suppression_and_pause_are_checked_at_send_time(settings: Settings) -> None:
    ship(settings, MONDAY)
    keep = add_person(settings, MONDAY, "Europe/London")
    leaves = add_person(settings, MONDAY, "Europe/London")
    pauses = add_person(settings, MONDAY, "Europe/London")
    info = _create(settings, "2027-02-03T15:00+00:00")
    with session_scope(settings.database_url) as session:
        gone = session.get(Subscriber, leaves)
        paused = session.get(Subscriber, pauses)
        assert gone is not None and paused is not None
        gone.status = UNSUBSCRIBED
        paused.paused_until = dt.date(2027, 3, 1)
    tick(settings, utc(2027, 2, 3, 14, 59))
    assert _sent(settings, info.slug) == []  # not before its moment
    tick(settings, utc(2027, 2, 3, 15, 0))
    assert _sent(settings, info.slug) == [keep]
    for day in range(1, 36):  # the paused reader never gets it late, the other one never
        tick(settings, utc(2027, 2, 3, 15) + dt.timedelta(days=day))
    assert _sent(settings, info.slug) == [keep]
    [mine] = [e for e in enrollments(settings, pauses) if e.position == 0]
    assert (mine.state, mine.next_due_at) == (CANCELLED, None)


def test_cancel_stops_what_has_not_gone(settings: Settings) -> None:
    ship(settings, MONDAY)
    add_person(settings, MONDAY, "Europe/London")
    info = _create(settings, "2027-02-05")
    cancelled = broadcasts.cancel(settings, info.id, MONDAY)
    assert cancelled is not None and cancelled.state == "cancelled" and cancelled.waiting == 0
    assert broadcasts.cancel(settings, info.id, MONDAY) is not None  # idempotent
    assert broadcasts.cancel(settings, 999, MONDAY) is None
    lose_redis(settings)
    for day in (5, 6):
        tick(settings, utc(2027, 2, day, 23, 0))
    assert _sent(settings, info.slug) == []


def test_audience_by_series_and_by_join_date(settings: Settings) -> None:
    ship(settings, MONDAY)
    early = add_person(settings, MONDAY - dt.timedelta(days=30), "UTC")
    myths = add_person(settings, MONDAY, "UTC", slugs=["myths-about-psychotherapy"])
    add_person(settings, MONDAY, "UTC", slugs=[])
    assert _create(settings, "now", "joined-before:2027-01-15").recipients == 1
    info = _create(settings, "now", "series:myths-about-psychotherapy")
    with session_scope(settings.database_url) as session:
        readers = set(
            session.scalars(
                select(Enrollment.subscriber_id)
                .join(Series, Series.id == Enrollment.series_id)
                .where(Series.slug == info.slug)
            )
        )
    assert readers == {early, myths}  # early joined every shipped series


def test_a_broadcast_leaves_the_series_queue_alone(settings: Settings) -> None:
    ship(settings, MONDAY)
    sid = add_person(settings, MONDAY, "Europe/London")
    before = [(e.series_id, e.state, e.next_due_at) for e in enrollments(settings, sid)]
    _create(settings, "2027-02-10")
    later = add_person(settings, MONDAY, "Europe/London")  # joins after: not in the letter
    after = [(e.series_id, e.state, e.next_due_at) for e in enrollments(settings, sid)]
    assert [x for x in after if x not in before] != []  # the letter's enrollment
    assert [x for x in before if x not in after] == []  # the series ones unchanged
    with session_scope(settings.database_url) as session:
        kinds = {
            s.kind
            for s in session.scalars(
                select(Series).join(Enrollment).where(Enrollment.subscriber_id == later)
            )
        }
    assert kinds == {"series"}


def test_bad_audience_and_time_say_what_is_wrong(settings: Settings) -> None:
    for raw, words in (
        ("everyone", "unknown audience"),
        ("series:", "needs series slugs"),
        ("joined-before:soon", "needs a date"),
    ):
        try:
            broadcasts.parse_audience(raw)
        except broadcasts.BroadcastError as exc:
            assert words in str(exc)
        else:
            raise AssertionError(raw)
    for raw, words in (("tomorrow", "--at must be"), ("2020-01-01", "in the past")):
        try:
            broadcasts.parse_when(raw, settings, MONDAY)
        except broadcasts.BroadcastError as exc:
            assert words in str(exc)
        else:
            raise AssertionError(raw)


def test_a_broadcast_is_no_series_choice_and_survives_a_preference_save(
    settings: Settings,
) -> None:
    from newsletter.services import people, preferences, signup

    ship(settings, MONDAY)
    sid = add_person(settings, MONDAY, "Europe/London")
    info = _create(settings, "2027-02-05")
    with session_scope(settings.database_url) as session:
        sub = session.get(Subscriber, sid)
        assert sub is not None
        assert info.slug not in [s.slug for s in people.live_series(session)]
        assert info.slug not in signup.chosen_series(session, sub)
        prefs = preferences.Preferences(
            series_slugs=["myths-about-psychotherapy"], timezone="Europe/London"
        )
        preferences.update_preferences(session, sub, prefs, MONDAY)
    tick(settings, utc(2027, 2, 5, 9, 0))
    assert _sent(settings, info.slug) == [sid]


def test_a_broadcast_cannot_be_queued_as_a_series(settings: Settings) -> None:
    from newsletter.engine import series_queue

    ship(settings, MONDAY)
    info = _create(settings, "now")
    with session_scope(settings.database_url) as session:
        try:
            series_queue.queue_series(session, info.slug, None, MONDAY)
        except series_queue.ScheduleError as exc:
            assert "is a broadcast" in str(exc)
        else:
            raise AssertionError("queued a broadcast")


@pytest.mark.parametrize(
    ("day", "due"),
    [
        # Los Angeles springs forward at 02:00 (09:00 is PDT, -7); Chatham is at +13:45, so its
        # 09:00 is the evening before in UTC
        (
            dt.date(2027, 3, 14),
            {CHATHAM: utc(2027, 3, 13, 19, 15), KOLKATA: utc(2027, 3, 14, 3, 30),
             LOS_ANGELES: utc(2027, 3, 14, 16, 0)},
        ),
        # Chatham falls back at 03:45 that morning (to +12:45)
        (
            dt.date(2027, 4, 4),
            {CHATHAM: utc(2027, 4, 3, 20, 15), KOLKATA: utc(2027, 4, 4, 3, 30),
             LOS_ANGELES: utc(2027, 4, 4, 16, 0)},
        ),
    ],
)  # fmt: skip
def test_a_dated_broadcast_goes_on_each_readers_local_date_at_their_slot(
    settings: Settings, day: dt.date, due: dict[str, dt.datetime]
) -> None:
    """A broadcast "on 14 March" is 14 March where each reader lives, at their usual 09:00: not
    a minute before, once, whatever the date or the offset is in UTC that moment."""
    ship(settings, MONDAY)
    people = {zone: add_person(settings, MONDAY, zone, slugs=[]) for zone in due}
    info = _create(settings, day.isoformat())
    assert info.recipients == 3
    for zone, moment in sorted(due.items(), key=lambda item: item[1]):
        tick(settings, moment - dt.timedelta(minutes=1))
        assert people[zone] not in _sent(settings, info.slug), f"{zone}: before its slot"
        tick(settings, moment)
        assert people[zone] in _sent(settings, info.slug), f"{zone}: not at its slot"
    tick(settings, max(due.values()) + dt.timedelta(days=1))
    assert _sent(settings, info.slug) == sorted(people.values())  # each once
    with session_scope(settings.database_url) as session:
        sent_at = dict(
            session.execute(
                select(Delivery.subscriber_id, Delivery.sent_at)
                .join(Series, Series.id == Delivery.series_id)
                .where(Series.slug == info.slug)
            ).all()
        )
    for zone, sid in people.items():
        at = sent_at[sid]
        assert at is not None
        local = at.astimezone(ZoneInfo(zone))
        assert (local.date(), local.time()) == (day, dt.time(9, 0)), zone
