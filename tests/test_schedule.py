"""Enrollments: queue order, one active series, first slot after confirmation, cadence, pause, --start."""

from __future__ import annotations

import datetime as dt
import itertools
from zoneinfo import ZoneInfo

from engine_support import add_person, enrollments, ship, utc
from sqlalchemy import select

from newsletter import schedule
from newsletter.config import Settings
from newsletter.db import session_scope
from newsletter.models import (
    ENROLLED_ACTIVE,
    FINISHED,
    FORTNIGHTLY,
    LIVE,
    QUEUED,
    SENT,
    Delivery,
    Enrollment,
    Part,
    Series,
    Subscriber,
)

MYTHS, COCREATED = "myths-about-psychotherapy", "co-created-process"


def test_enroll_in_queue_order_first_slot_strictly_after_confirmation(settings: Settings) -> None:
    now = utc(2027, 3, 2, 9, 0)  # Tuesday 09:00 London (GMT): exactly a slot -> next week's
    ship(settings, now)
    sid = add_person(settings, now, "Europe/London")
    rows = enrollments(settings, sid)
    with session_scope(settings.database_url) as session:
        slugs = {s.id: s.slug for s in session.scalars(select(Series))}
        assert all(s.state == LIVE for s in session.scalars(select(Series)))
    assert [slugs[r.series_id] for r in rows] == [MYTHS, COCREATED]
    assert [r.state for r in rows] == [ENROLLED_ACTIVE, QUEUED]
    assert rows[0].next_due_at == utc(2027, 3, 9, 9, 0)
    assert rows[1].next_due_at is None


def test_first_article_in_subscriber_zone(settings: Settings) -> None:
    now = utc(2027, 3, 1, 12, 0)  # Monday
    ship(settings, now)
    for zone in ("America/New_York", "Asia/Kolkata", "Pacific/Chatham", "Australia/Sydney"):
        sid = add_person(settings, now, zone)
        due = enrollments(settings, sid)[0].next_due_at
        assert due is not None and due > now
        local = due.astimezone(ZoneInfo(zone))
        assert (local.weekday(), local.hour, local.minute) == (1, 9, 0)
        assert due - now <= dt.timedelta(days=7)


def _send_all(settings: Settings, sid: int, now: dt.datetime) -> list[dt.datetime]:
    """Advance a subscriber through everything by hand (no Redis/dispatch), returning slots."""
    out = []
    with session_scope(settings.database_url) as session:
        sub = session.get(Subscriber, sid)
        assert sub is not None
        counts = schedule.part_counts(session)
        for _ in range(20):
            enr = session.scalar(
                select(Enrollment).where(
                    Enrollment.subscriber_id == sid, Enrollment.state == ENROLLED_ACTIVE
                )
            )
            if enr is None:
                break
            assert enr.next_due_at is not None
            slot = enr.next_due_at
            out.append(slot)
            session.add(
                Delivery(
                    subscriber_id=sid,
                    series_id=enr.series_id,
                    part_number=enr.next_part,
                    status=SENT,
                    scheduled_for=slot,
                    sent_at=slot,
                )
            )
            series = session.get(Series, enr.series_id)
            assert series is not None
            schedule.advance(session, enr, sub, series, counts[series.id], slot, slot, counts)
            session.flush()
    return out


def test_series_follow_each_other_weekly_then_fortnightly(settings: Settings) -> None:
    now = utc(2027, 3, 1, 12, 0)
    ship(settings, now)
    weekly = add_person(settings, now, "America/New_York")
    slots = _send_all(settings, weekly, now)
    assert len(slots) == 6  # 4 myths + 2 co-created
    zone = ZoneInfo("America/New_York")
    days = [s.astimezone(zone).date() for s in slots]
    assert all((b - a).days == 7 for a, b in itertools.pairwise(days))
    assert all(s.astimezone(zone).hour == 9 for s in slots)  # across the 14 March DST change
    assert [e.state for e in enrollments(settings, weekly)] == [FINISHED, FINISHED]

    slow = add_person(settings, now, "Europe/London", cadence=FORTNIGHTLY)
    slots = _send_all(settings, slow, now)
    days = [s.date() for s in slots]
    assert all((b - a).days == 14 for a, b in itertools.pairwise(days))


def test_pause_and_resume_at_next_part(settings: Settings) -> None:
    now = utc(2027, 3, 1, 12, 0)
    ship(settings, now)
    sid = add_person(settings, now, "Europe/London")
    with session_scope(settings.database_url) as session:
        sub = session.get(Subscriber, sid)
        assert sub is not None
        sub.paused_until = dt.date(2027, 4, 1)
        schedule.apply_preferences(session, sub, now)
        due = schedule.first_article_at(session, sub)
        assert due == utc(2027, 4, 6, 8, 0)  # first Tuesday on/after 1 April, 09:00 BST
        sub.paused_until = None
        schedule.apply_preferences(session, sub, now)
        assert schedule.first_article_at(session, sub) == utc(2027, 3, 2, 9, 0)
    rows = enrollments(settings, sid)
    assert rows[0].next_part == 1


def test_preference_save_after_a_late_send_keeps_the_parts_a_week_apart(
    settings: Settings,
) -> None:
    """Part 1 (slot Tuesday 2 March) only went out on Monday 22 March after retries; saving
    preferences that change nothing must not bring part 2 forward to the next day."""
    now = utc(2027, 3, 1, 12, 0)
    ship(settings, now)
    sid = add_person(settings, now, "UTC")
    slot, sent = utc(2027, 3, 2, 9, 0), utc(2027, 3, 22, 10, 0)
    with session_scope(settings.database_url) as session:
        sub = session.get(Subscriber, sid)
        assert sub is not None
        enr = schedule._enrollments(session, sid)[0]
        series = session.get(Series, enr.series_id)
        assert series is not None
        session.add(
            Delivery(
                subscriber_id=sid,
                series_id=enr.series_id,
                part_number=1,
                status=SENT,
                scheduled_for=slot,
                sent_at=sent,
            )
        )
        schedule.advance(session, enr, sub, series, 4, slot, sent)  # what dispatch does
        after_send = enr.next_due_at
        assert after_send == utc(2027, 3, 30, 9, 0)
        schedule.apply_preferences(session, sub, sent + dt.timedelta(hours=1))
        assert schedule.first_article_at(session, sub) == after_send


def test_queue_series_with_start_date(settings: Settings) -> None:
    now = utc(2027, 1, 4, 12, 0)
    ship(settings, now)
    done = add_person(settings, now, "Australia/Sydney")
    _send_all(settings, done, now)  # finished both shipped series by mid-February
    busy = add_person(settings, utc(2027, 2, 20, 0, 0), "UTC")  # still in Myths in March
    with session_scope(settings.database_url) as session:
        third = Series(
            slug="third", title="Third", send_day=3, send_time="18:30", cadence="weekly", order=3
        )
        session.add(third)
        session.flush()
        session.add(
            Part(
                series_id=third.id,
                number=1,
                filename="01.md",
                title="One",
                body_md="x",
                content_hash="h",
            )
        )
        session.flush()
        assert third.state == "draft"
        report = schedule.queue_series(
            session, "third", dt.date(2027, 3, 10), utc(2027, 2, 25, 0, 0)
        )
        assert report.count == 2
    rows = {e.series_id: e for e in enrollments(settings, done)}
    third_row = next(e for e in rows.values() if e.not_before is not None)
    assert third_row.state == ENROLLED_ACTIVE
    local = third_row.next_due_at.astimezone(ZoneInfo("Australia/Sydney"))  # type: ignore[union-attr]
    assert local.date() >= dt.date(2027, 3, 10)
    assert (local.weekday(), local.hour, local.minute) == (3, 18, 30)
    assert local.date() == dt.date(2027, 3, 11)
    busy_rows = enrollments(settings, busy)
    assert busy_rows[-1].state == QUEUED and busy_rows[-1].not_before == dt.date(2027, 3, 10)


def test_appended_part_reopens_finished_enrollments(settings: Settings) -> None:
    now = utc(2027, 1, 4, 12, 0)
    ids = ship(settings, now)
    sid = add_person(settings, now, "Europe/London", slugs=[COCREATED])
    slots = _send_all(settings, sid, now)
    assert len(slots) == 2
    later = utc(2027, 6, 1, 12, 0)
    with session_scope(settings.database_url) as session:
        session.add(
            Part(
                series_id=ids[COCREATED],
                number=3,
                filename="03.md",
                title="Three",
                body_md="x",
                content_hash="h3",
            )
        )
        session.flush()
        changed = schedule.parts_appended(session, ids[COCREATED], later)
        assert changed
    row = next(e for e in enrollments(settings, sid) if e.series_id == ids[COCREATED])
    assert row.state == ENROLLED_ACTIVE and row.next_part == 3
    assert row.next_due_at is not None and row.next_due_at > later
