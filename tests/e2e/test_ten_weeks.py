"""Ten simulated weeks driven by `newsletter tick --now` across six zones and three DST changes.

Late joiners, a cadence change, a pause and resume, an unsubscribe midway (Redis entry left in
place: the send-time check must stop it) and a third series queued with `--start` in March 2027.
Every subscriber gets every part they should, once, in order, at local send time.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections import defaultdict
from zoneinfo import ZoneInfo

import pytest
from engine_support import add_person, cli_tick, outbox_mails, ship, utc
from sqlalchemy import select
from typer.testing import CliRunner

from newsletter.cli import app
from newsletter.core.config import Settings
from newsletter.engine import schedule
from newsletter.queue.dueset import RedisQueue
from newsletter.store.db import session_scope
from newsletter.store.models import (
    ACTIVE,
    ENROLLED_ACTIVE,
    FORTNIGHTLY,
    SENT,
    UNSUBSCRIBED,
    Delivery,
    Enrollment,
    Part,
    Series,
    Subscriber,
)

pytestmark = pytest.mark.slow

START = utc(2027, 2, 1, 0, 0)  # Monday
END = START + dt.timedelta(weeks=10)  # 12 April 2027: after US (14 Mar), UK (28 Mar), AU (4 Apr)
STEP = dt.timedelta(minutes=15)
runner = CliRunner()


def test_ten_weeks(settings: Settings) -> None:
    ship(settings, START)
    people: dict[str, int] = {}
    for zone in (
        "America/New_York",
        "Europe/London",
        "Australia/Sydney",
        "Asia/Kolkata",
        "Pacific/Chatham",
        "UTC",
    ):
        people[zone] = add_person(settings, START, zone)
    events: dict[dt.datetime, str] = {
        utc(2027, 2, 10, 12): "pause",  # Sydney: paused until 10 March
        utc(2027, 2, 17, 12): "join-late-1",  # another Kolkata subscriber
        utc(2027, 2, 17, 12, 5): "unsubscribe",  # UTC subscriber, after 3 parts
        utc(2027, 2, 18, 12): "cadence",  # London -> fortnightly
        utc(2027, 3, 1, 12): "third",  # the therapist queues a third series from 10 March
        utc(2027, 3, 3, 12): "join-late-2",  # a Chatham subscriber, after the third was queued
        utc(2027, 3, 5, 12): "resume",  # Sydney: un-pauses early (still before 10 March)
    }
    unsubscribed_at: dt.datetime | None = None
    now = START
    total_sent = 0
    while now < END:
        now += STEP
        for at in [e for e in events if e <= now]:
            kind = events.pop(at)
            if kind == "pause" or kind == "resume":
                with session_scope(settings.database_url) as session:
                    sub = session.get(Subscriber, people["Australia/Sydney"])
                    assert sub is not None
                    sub.paused_until = dt.date(2027, 3, 10) if kind == "pause" else None
                    changed = schedule.apply_preferences(session, sub, at)
                    session.commit()
                    RedisQueue(settings).sync_enrollments(session, [e.id for e in changed])
            elif kind == "cadence":
                with session_scope(settings.database_url) as session:
                    sub = session.get(Subscriber, people["Europe/London"])
                    assert sub is not None
                    sub.cadence = FORTNIGHTLY
                    changed = schedule.apply_preferences(session, sub, at)
                    session.commit()
                    RedisQueue(settings).sync_enrollments(session, [e.id for e in changed])
            elif kind == "unsubscribe":
                with session_scope(settings.database_url) as session:
                    sub = session.get(Subscriber, people["UTC"])
                    assert sub is not None
                    sub.status, sub.unsubscribed_at = UNSUBSCRIBED, at
                unsubscribed_at = at
            elif kind == "third":
                with session_scope(settings.database_url) as session:
                    third = Series(
                        slug="third-series",
                        title="A Third Series",
                        send_day=3,  # Thursday
                        send_time="18:30",
                        cadence="weekly",
                        order=3,
                    )
                    session.add(third)
                    session.flush()
                    for n in (1, 2):
                        session.add(
                            Part(
                                series_id=third.id,
                                number=n,
                                filename=f"0{n}.md",
                                title=f"Third, part {n}",
                                summary="",
                                body_md=f"Body of part {n}.",
                                content_hash=f"h{n}",
                            )
                        )
                result = runner.invoke(
                    app, ["series", "queue", "third-series", "--start", "2027-03-10"]
                )
                assert result.exit_code == 0, result.output
            elif kind.startswith("join-late"):
                zone = "Asia/Kolkata" if kind.endswith("1") else "Pacific/Chatham"
                people[f"late {zone}"] = add_person(settings, at, zone)
        total_sent += cli_tick(now)["sent"]

    with session_scope(settings.database_url) as session:
        series = {s.id: s for s in session.scalars(select(Series))}
        rows = list(session.scalars(select(Delivery).order_by(Delivery.sent_at, Delivery.id)))
        open_enrollments = list(
            session.execute(
                select(Enrollment, Subscriber)
                .join(Subscriber, Subscriber.id == Enrollment.subscriber_id)
                .where(Enrollment.state == ENROLLED_ACTIVE, Subscriber.status == ACTIVE)
            )
        )
        zones = {s.id: s.timezone for s in session.scalars(select(Subscriber))}

    assert all(r.status == SENT for r in rows)
    assert len(outbox_mails(settings)) == len(rows) == total_sent  # once each, at the provider
    by_sub: dict[int, list[Delivery]] = defaultdict(list)
    for r in rows:
        assert r.subscriber_id is not None
        by_sub[r.subscriber_id].append(r)
    order = {"myths-about-psychotherapy": 1, "co-created-process": 2, "third-series": 3}
    for sid, sent in by_sub.items():
        tz = ZoneInfo(zones[sid])
        seen: list[tuple[int, int]] = []
        for r in sent:
            s = series[r.series_id]
            local = r.scheduled_for.astimezone(tz)
            assert (local.weekday(), f"{local:%H:%M}") == (s.send_day, s.send_time)  # no gaps hit
            assert r.sent_at is not None
            assert dt.timedelta(0) <= r.sent_at - r.scheduled_for < STEP  # on time, never early
            seen.append((order[s.slug], r.part_number))
        assert seen == sorted(seen)  # series in queue order, parts in order
        per_series: dict[int, list[int]] = defaultdict(list)
        for o, p in seen:
            per_series[o].append(p)
        for parts in per_series.values():
            assert parts == list(range(1, len(parts) + 1))  # from 1, no gaps, no repeats
        days = [r.scheduled_for.astimezone(tz).date() for r in sent]
        for a, b in itertools.pairwise(days):
            assert (b - a).days >= 5  # at most one article a week
    # Nobody is left behind: whatever is still active is due after the end.
    for enrollment, _sub in open_enrollments:
        assert enrollment.next_due_at is None or enrollment.next_due_at > END - STEP

    def got(key: str) -> list[tuple[str, int, dt.date]]:
        tz = ZoneInfo(zones[people[key]])
        return [
            (series[r.series_id].slug[:5], r.part_number, r.scheduled_for.astimezone(tz).date())
            for r in by_sub[people[key]]
        ]

    d = dt.date
    # New York: everything, weekly, Tuesdays 09:00 local across the 14 March change.
    assert got("America/New_York") == [
        ("myths", 1, d(2027, 2, 2)),
        ("myths", 2, d(2027, 2, 9)),
        ("myths", 3, d(2027, 2, 16)),
        ("myths", 4, d(2027, 2, 23)),
        ("co-cr", 1, d(2027, 3, 2)),
        ("co-cr", 2, d(2027, 3, 9)),
        ("third", 1, d(2027, 3, 18)),  # not before 10 March, one week after the last part
        ("third", 2, d(2027, 3, 25)),
    ]
    # London: fortnightly from 18 February (after part 3 on 16 Feb).
    london = got("Europe/London")
    assert [x[2] for x in london][:5] == [
        d(2027, 2, 2),
        d(2027, 2, 9),
        d(2027, 2, 16),
        d(2027, 3, 2),
        d(2027, 3, 16),
    ]
    # Sydney: paused after part 2; resumed on 5 March at part 3 (not part 1).
    sydney = got("Australia/Sydney")
    assert sydney[:3] == [
        ("myths", 1, d(2027, 2, 2)),
        ("myths", 2, d(2027, 2, 9)),
        ("myths", 3, d(2027, 3, 9)),
    ]
    # The unsubscribed one: three parts, nothing after unsubscribing.
    gone = by_sub[people["UTC"]]
    assert [r.part_number for r in gone] == [1, 2, 3]
    assert unsubscribed_at is not None and all(r.sent_at < unsubscribed_at for r in gone)  # type: ignore[operator]
    # Late joiners start at part 1 at their first slot after joining.
    assert got("late Asia/Kolkata")[0] == ("myths", 1, d(2027, 2, 23))
    assert got("late Pacific/Chatham")[0] == ("myths", 1, d(2027, 3, 9))
