"""Enrollments: queue order, one active series, first slot after confirmation, cadence, pause, --start."""

from __future__ import annotations

import datetime as dt
import itertools
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from engine_support import add_person, enrollments, ledger, queues_kept, ship, utc
from scale_support import statements
from sqlalchemy import select

from newsletter.core.config import Settings
from newsletter.engine import schedule, series_queue
from newsletter.engine.reconcile import reconcile
from newsletter.engine.tick import tick
from newsletter.queue.dueset import RedisQueue
from newsletter.store.db import session_scope
from newsletter.store.models import (
    ENROLLED_ACTIVE,
    FINISHED,
    FORTNIGHTLY,
    LIVE,
    PAUSED,
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
            schedule.move_on(session, enr, sub, series, counts[series.id], slot, slot, counts)
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
        schedule.move_on(session, enr, sub, series, 4, slot, sent)  # what dispatch does
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
        report = series_queue.queue_series(
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
        changed = series_queue.parts_appended(session, ids[COCREATED], later)
        assert changed
    row = next(e for e in enrollments(settings, sid) if e.series_id == ids[COCREATED])
    assert row.state == ENROLLED_ACTIVE and row.next_part == 3
    assert row.next_due_at is not None and row.next_due_at > later


def test_a_reopened_series_goes_to_the_end_of_the_readers_queue(settings: Settings) -> None:
    """Parts appended to a series a reader finished give it back at the end of her queue (one
    after her last place, the rule `append_queued` uses too), waiting behind the series she is
    in now; a reader with nothing else gets it at her next slot. One UPDATE for the batch."""
    now = utc(2027, 1, 4, 12, 0)
    ids = ship(settings, now)
    busy, free = (add_person(settings, now, zone, slugs=[COCREATED]) for zone in ("UTC", "UTC"))
    for sid in (busy, free):
        _send_all(settings, sid, now)
    later = utc(2027, 6, 1, 12, 0)
    with session_scope(settings.database_url) as session:
        sub = session.get(Subscriber, busy)
        assert sub is not None
        schedule.enroll(session, sub, later, [MYTHS])  # Myths after Co-Created: position 2
        session.add(
            Part(series_id=ids[COCREATED], number=3, filename="03.md", title="Three",
                 body_md="x", content_hash="h3")
        )  # fmt: skip
        session.flush()
        with statements(settings) as seen:
            series_queue.parts_appended(session, ids[COCREATED], later)
    moves = [s for s in seen.seen if s.startswith("UPDATE enrollments") and "position" in s]
    assert len(moves) == 1, moves  # the batch's places moved in one statement
    rows = {e.series_id: e for e in enrollments(settings, busy)}
    myths, cocreated = rows[ids[MYTHS]], rows[ids[COCREATED]]
    assert myths.state == ENROLLED_ACTIVE
    assert (cocreated.state, cocreated.next_part) == (QUEUED, 3)
    assert cocreated.position == myths.position + 1 == 3
    (alone,) = enrollments(settings, free)
    assert (alone.state, alone.next_part, alone.position) == (ENROLLED_ACTIVE, 3, 2)
    assert alone.next_due_at is not None and alone.next_due_at > later
    assert queues_kept(settings.database_url)[busy] == f"{ids[COCREATED]}:3:"


# --- one rule for preferences against due parts (schedule.reschedule) ----------------------
# A London subscriber (GMT until 28 March, BST after) enrolled on Monday 1 March 2027: part 1
# goes out on Tuesday 2 March 09:00 UTC, part 2 is due Tuesday 9 March 09:00 UTC.

ENROLLED = utc(2027, 3, 1, 12, 0)
PART_1 = utc(2027, 3, 2, 9, 0)
PART_2 = utc(2027, 3, 9, 9, 0)
PART_2_DUE_NOW = PART_2 + dt.timedelta(seconds=30)  # the save lands just after the slot
NOT_YET_DUE = utc(2027, 3, 3, 12, 0)  # the Wednesday after part 1


def _after_part_1(settings: Settings) -> int:
    """Ship, enroll a London subscriber and send part 1 through a real tick (outbox)."""
    ship(settings, ENROLLED)
    sid = add_person(settings, ENROLLED, "Europe/London")
    assert tick(settings, PART_1).sent == 1
    (row, _) = enrollments(settings, sid)
    assert (row.next_part, row.next_due_at) == (2, PART_2)
    return sid


def _save(
    settings: Settings,
    sid: int,
    now: dt.datetime,
    *,
    resuming: bool = False,
    **fields: object,
) -> dt.datetime | None:
    """Set subscriber fields, apply the rule, mirror into Redis; returns the new due time."""
    with session_scope(settings.database_url) as session:
        sub = session.get(Subscriber, sid)
        assert sub is not None
        for name, value in fields.items():
            setattr(sub, name, value)
        changed = schedule.reschedule(session, sub, now, resuming=resuming)
        due = schedule.first_article_at(session, sub)
        session.commit()
        RedisQueue(settings).sync_enrollments(session, [e.id for e in changed])
    return due


@pytest.mark.parametrize("zone", ["Asia/Tokyo", "America/Los_Angeles"])
def test_a_due_part_stays_due_when_the_time_zone_changes(settings: Settings, zone: str) -> None:
    """(a) Recomputed, 09:00 Tuesday in Tokyo would be next week, in Los Angeles this evening:
    the part was due, so it stays due and the next tick sends it."""
    sid = _after_part_1(settings)
    assert _save(settings, sid, PART_2_DUE_NOW, timezone=zone) == PART_2
    summary = tick(settings, PART_2_DUE_NOW)
    assert summary.sent == 1
    assert [(r[2], r[3]) for r in ledger(settings)] == [(1, SENT), (2, SENT)]
    # and from there on the new zone: part 3 one week later at 09:00 local
    part_3 = enrollments(settings, sid)[0].next_due_at
    assert part_3 is not None
    local = part_3.astimezone(ZoneInfo(zone))
    assert (local.date(), local.hour) == (dt.date(2027, 3, 16), 9)


def test_a_due_part_stays_due_when_the_cadence_becomes_fortnightly(settings: Settings) -> None:
    """(b) Not a week later (part 1 + two weeks): the part was already due."""
    sid = _after_part_1(settings)
    assert _save(settings, sid, PART_2_DUE_NOW, cadence=FORTNIGHTLY) == PART_2
    assert tick(settings, PART_2_DUE_NOW).sent == 1
    # the new cadence counts from this part: part 3 two weeks later
    assert enrollments(settings, sid)[0].next_due_at == utc(2027, 3, 23, 9, 0)


@pytest.mark.parametrize(
    ("zone", "expected"),
    [
        ("America/New_York", utc(2027, 3, 9, 14, 0)),  # 09:00 EST, later than in London
        ("Asia/Tokyo", utc(2027, 3, 9, 0, 0)),  # 09:00 JST, earlier than in London
    ],
)
def test_a_part_not_yet_due_moves_to_the_new_zones_slot(
    settings: Settings, zone: str, expected: dt.datetime
) -> None:
    """(c)"""
    sid = _after_part_1(settings)
    assert _save(settings, sid, NOT_YET_DUE, timezone=zone) == expected


def test_a_zone_change_never_moves_a_part_before_the_series_start_date(
    settings: Settings,
) -> None:
    """(c) The recomputed slot still respects `not_before` (a series queued with --start)."""
    sid = _after_part_1(settings)
    with session_scope(settings.database_url) as session:
        (row,) = [r for r in schedule._enrollments(session, sid) if r.state == ENROLLED_ACTIVE]
        row.not_before = dt.date(2027, 3, 20)
    assert _save(settings, sid, NOT_YET_DUE, timezone="Asia/Tokyo") == utc(2027, 3, 23, 0, 0)


def test_a_cadence_change_moves_a_part_not_yet_due_from_the_last_part_sent(
    settings: Settings,
) -> None:
    """(d) Fortnightly: part 1 (2 March) + two weeks, not now + two weeks; back to weekly:
    part 1 + one week again."""
    sid = _after_part_1(settings)
    assert _save(settings, sid, NOT_YET_DUE, cadence=FORTNIGHTLY) == utc(2027, 3, 16, 9, 0)
    assert _save(settings, sid, NOT_YET_DUE, cadence="weekly") == PART_2


@pytest.mark.parametrize(
    ("zone", "until", "expected"),
    [
        ("Europe/London", dt.date(2027, 4, 2), utc(2027, 4, 6, 8, 0)),  # Friday -> Tue, BST
        ("Europe/London", dt.date(2027, 3, 23), utc(2027, 3, 23, 9, 0)),  # a Tuesday: that day
        # the pause date is in the (new) local calendar: Tuesday 23 March 09:00 in Auckland
        ("Pacific/Auckland", dt.date(2027, 3, 23), utc(2027, 3, 22, 20, 0)),
    ],
)
def test_a_pause_over_a_due_part_moves_it_to_the_first_slot_after_the_pause(
    settings: Settings, zone: str, until: dt.date, expected: dt.datetime
) -> None:
    """(e)"""
    sid = _after_part_1(settings)
    due = _save(settings, sid, PART_2_DUE_NOW, timezone=zone, paused_until=until)
    assert due == expected
    assert tick(settings, PART_2_DUE_NOW).sent == 0
    assert tick(settings, expected - dt.timedelta(minutes=1)).sent == 0
    assert tick(settings, expected).sent == 1


STEP = dt.timedelta(hours=3)  # a coarse beat (keeps the tests quick); a burst would still show


def _sends(settings: Settings, start: dt.datetime, end: dt.datetime) -> list[dt.datetime]:
    """Reconcile and tick every STEP from `start` to `end`; the slots of the parts sent in that
    time, each checked to have gone out at the first tick at or after its slot."""
    now = start
    while now <= end:
        reconcile(settings, now)
        tick(settings, now)
        now += STEP
    with session_scope(settings.database_url) as session:
        rows = session.execute(
            select(Delivery.scheduled_for, Delivery.sent_at)
            .where(Delivery.status == SENT, Delivery.sent_at >= start)
            .order_by(Delivery.id)
        ).all()
    for slot, sent in rows:
        assert slot <= sent < slot + STEP
    return [slot for slot, _ in rows]


def _weekly(first: dt.datetime, count: int) -> list[dt.datetime]:
    """`count` Tuesdays 09:00 London from `first` (all in BST here)."""
    return [first + dt.timedelta(weeks=n) for n in range(count)]


def test_a_long_pause_ends_with_one_part_at_the_next_slot_then_one_a_week(
    settings: Settings,
) -> None:
    """(f) The subscriber pauses for three months after part 1: nothing during the pause, then
    part 2 at the first slot on/after 1 June, parts 3 and 4 and the next series weekly —
    never the parts "missed" during the pause all at once."""
    sid = _after_part_1(settings)
    june = utc(2027, 6, 1, 8, 0)  # Tuesday 1 June 09:00 BST
    assert _save(settings, sid, NOT_YET_DUE, paused_until=dt.date(2027, 6, 1)) == june
    assert _sends(settings, NOT_YET_DUE, utc(2027, 6, 30)) == _weekly(june, 5)
    assert [(r[2], r[3]) for r in ledger(settings)][1:4] == [(2, SENT), (3, SENT), (4, SENT)]


def test_an_admin_series_resume_sends_one_part_at_the_next_slot_not_at_once(
    settings: Settings,
) -> None:
    """(f) The therapist pauses Myths for three months: part 2 (due 9 March) is held. On resume
    (`resuming=True`, what roster.resume_series does) it goes out at the next slot — not at the
    moment of the resume, as a preference save would keep an overdue part — then weekly."""
    sid = _after_part_1(settings)
    myths = enrollments(settings, sid)[0].series_id
    with session_scope(settings.database_url) as session:
        series = session.get(Series, myths)
        assert series is not None
        series.state = PAUSED
        session.commit()
        RedisQueue(settings).sync_enrollments(session, [e.id for e in enrollments(settings, sid)])
    assert _sends(settings, NOT_YET_DUE, utc(2027, 6, 2, 12)) == []
    resumed = utc(2027, 6, 2, 15, 0)  # a Wednesday afternoon
    with session_scope(settings.database_url) as session:
        series = session.get(Series, myths)
        assert series is not None
        series.state = LIVE
    next_slot = utc(2027, 6, 8, 8, 0)  # Tuesday 09:00 BST
    assert _save(settings, sid, resumed, resuming=True) == next_slot
    assert _sends(settings, resumed, utc(2027, 6, 30)) == _weekly(next_slot, 4)
    assert [(r[2], r[3]) for r in ledger(settings)][1:4] == [(2, SENT), (3, SENT), (4, SENT)]


def test_a_resume_moves_an_overdue_part_but_a_preference_save_keeps_it(
    settings: Settings,
) -> None:
    """The two rules side by side on the same overdue part (due 9 March, saved 10 March)."""
    sid = _after_part_1(settings)
    later = utc(2027, 3, 10, 12, 0)
    assert _save(settings, sid, later) == PART_2
    assert _save(settings, sid, later, resuming=True) == utc(2027, 3, 16, 9, 0)


def test_clearing_a_pause_resumes_at_the_next_slot(settings: Settings) -> None:
    """(g) Paused until 1 June on 3 March; cleared on Thursday 22 April: part 2 at the next
    slot (Tuesday 27 April 09:00 BST), not at once and not on 1 June."""
    sid = _after_part_1(settings)
    _save(settings, sid, NOT_YET_DUE, paused_until=dt.date(2027, 6, 1))
    cleared = utc(2027, 4, 22, 10, 0)
    assert _save(settings, sid, cleared, paused_until=None) == utc(2027, 4, 27, 8, 0)
    assert tick(settings, cleared).sent == 0
    assert tick(settings, utc(2027, 4, 27, 8, 0)).sent == 1


def _enrollment_rows(session: Any) -> list[tuple[object, ...]]:
    return [
        (e.id, e.subscriber_id, e.series_id, e.state, e.next_part, e.next_due_at, e.position)
        for e in session.scalars(select(Enrollment).order_by(Enrollment.id))
    ]


def _unsettle(session: Any, now: dt.datetime) -> None:
    """Work for the rule: due times cleared (as after a queue or a resume), a reader whose active
    series ran out of parts, one with two active rows, one reader unsubscribed."""
    subs = list(session.scalars(select(Subscriber).order_by(Subscriber.id)))
    rows = list(session.scalars(select(Enrollment).order_by(Enrollment.id)))
    for row in rows[::2]:
        if row.state == ENROLLED_ACTIVE:
            row.next_due_at = None
    finished = next(r for r in rows if r.subscriber_id == subs[1].id and r.state == ENROLLED_ACTIVE)
    finished.next_part = 99
    both = [r for r in rows if r.subscriber_id == subs[2].id and r.state == QUEUED]
    both[0].state = ENROLLED_ACTIVE
    subs[3].status = "unsubscribed"
    session.flush()


@pytest.mark.parametrize(("recompute", "keep_due"), [(False, False), (True, True), (True, False)])
def test_place_each_writes_exactly_what_place_writes_reader_by_reader(
    settings: Settings, recompute: bool, keep_due: bool
) -> None:
    """The bulk path (a series queued or resumed for everyone) is the same rule, not a second
    one: from the same rows, `place_each` over all readers changes the same enrollments to the
    same values as `place` called for each, with statements that don't grow per reader."""
    start = utc(2027, 3, 1, 12)  # a Monday
    ship(settings, start)
    zones = ["Europe/London", "Asia/Tokyo", "America/Denver", "Pacific/Auckland"]
    for i, zone in enumerate(zones * 3):
        cadence = FORTNIGHTLY if i % 3 == 0 else "weekly"
        paused = dt.date(2027, 4, 1) if i % 5 == 4 else None
        add_person(settings, start, zone, cadence=cadence, paused_until=paused)
    tick(settings, utc(2027, 3, 3, 12))  # the first part sent to some (a last slot to count from)
    now = utc(2027, 3, 4, 12)  # Thursday: a fortnightly reader who had part 1 waits a week more
    results = []
    for bulk in (False, True):
        with session_scope(settings.database_url) as session:
            _unsettle(session, now)
            subs = list(session.scalars(select(Subscriber).order_by(Subscriber.id)))
            if bulk:
                with statements(settings) as seen:
                    changed = schedule.place_each(
                        session, subs, now, recompute=recompute, keep_due=keep_due
                    )
                reads = [x for x in seen.seen if x.lstrip().upper().startswith("SELECT")]
                assert (
                    len(reads) == 4
                )  # enrollments, part counts, series, last slots: not a reader's
            else:
                changed = [
                    c
                    for s in subs
                    for c in schedule.place(session, s, now, recompute=recompute, keep_due=keep_due)
                ]
            results.append((sorted({c.id for c in changed}), _enrollment_rows(session)))
            session.rollback()
    (one_ids, one_rows), (many_ids, many_rows) = results
    assert one_ids and many_ids == one_ids
    assert many_rows == one_rows
