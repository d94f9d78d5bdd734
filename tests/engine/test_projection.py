"""The calendar equals the sends: what every view shows for 12 weeks is what the engine sends.

For each drawn practice (readers across zones with DST changes inside the window, Chatham's
+12:45 and Kolkata's +5:30, weekly and fortnightly, pauses ended or running, some joining
after the later series were queued; one to three series, each maybe with a start date (readers
who join after a series was queued with one start at it too); up to two broadcasts on a local date or
at a fixed moment), the calendar (the service, the admin page and the API's JSON), each
person's coming sends (their page and the API) and the preference page's next date are read at
the start; then the engine sends through the 12 weeks, a tick at every moment any view showed
and at every broadcast, and a last sweep. The multiset (reader, series, part, local date)
shown equals the multiset sent, every example, on both databases.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest
import time_machine
from engine_support import add_person, delete_prefixed, utc
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from paths import ROOT
from pydantic import SecretStr
from sqlalchemy import delete, select
from web_helpers import signed_in

from newsletter.content import series as content
from newsletter.content.letter import letter
from newsletter.core import timing
from newsletter.core.config import Settings
from newsletter.engine import series_queue
from newsletter.engine.tick import tick
from newsletter.queue.dueset import RedisQueue
from newsletter.services import auth, broadcasts
from newsletter.services import calendar as views
from newsletter.store import series as series_store
from newsletter.store.db import session_scope
from newsletter.store.models import (
    SENT,
    Broadcast,
    Delivery,
    Enrollment,
    Part,
    ProviderEvent,
    Series,
    Subscriber,
    Suppression,
)

NOW = utc(2027, 3, 1, 12)  # a Monday: New York, London and Chatham change their clocks within
PRACTICE = "America/New_York"
WEEKS = 12
END = dt.datetime.combine(
    NOW.date() + dt.timedelta(weeks=WEEKS), dt.time(0), timing.zone_info(PRACTICE)
).astimezone(dt.UTC)  # the calendar's last day ends here (it starts on this Monday)
ZONES = (
    "America/New_York",  # DST from 14 March
    "Europe/London",  # DST from 28 March
    "Pacific/Chatham",  # +13:45 -> +12:45 on 4 April
    "Asia/Kolkata",  # +5:30
    "Asia/Tokyo",
    "America/Los_Angeles",
    "UTC",
)
MYTHS, CO, EVENING = "myths-about-psychotherapy", "co-created-process", "evening-notes"
PASSWORD = "a calm and long password"
NOTE = letter("News from the practice", "A short note.", "The practice has news.\n")
# no shrinking by default: an example costs seconds and the failing one is printed as drawn
PHASES = (Phase.explicit, Phase.reuse, Phase.generate)
Shown = Counter[tuple[int, str, int, dt.date]]  # (reader, series slug, part, their local date)


@dataclass(frozen=True)
class World:
    readers: list[tuple[str, str, int | None, bool]]  # zone, cadence, pause end (days from
    # NOW), joins after the later series were queued
    series: list[str]  # queue order
    starts: list[int | None]  # start date (days from NOW) of each series
    letters: list[tuple[str, int]]  # ("date", days from NOW) or ("moment", hours from NOW)


@st.composite
def worlds(draw: st.DrawFn) -> World:
    readers = draw(
        st.lists(
            st.tuples(
                st.sampled_from(ZONES),
                st.sampled_from(("weekly", "fortnightly")),
                st.one_of(st.none(), st.integers(-20, 70)),
                st.booleans(),
            ),
            min_size=1,
            max_size=40,
        )
    )
    order = draw(st.permutations((MYTHS, CO, EVENING)))[: draw(st.integers(1, 3))]
    starts = [draw(st.one_of(st.none(), st.integers(0, 60))) for _ in order]
    letters = draw(
        st.lists(
            st.one_of(
                st.tuples(st.just("date"), st.integers(0, 70)),
                st.tuples(st.just("moment"), st.integers(1, 70 * 24)),
            ),
            max_size=2,
        )
    )
    return World(readers, list(order), starts, letters)


@pytest.fixture
def practice(settings: Settings, tmp_path: Path) -> Settings:
    """The shipped series plus a third (Thursday 18:30, every two weeks), the practice in New
    York, an admin password."""
    schedules = tmp_path / "schedules"
    shutil.copytree(ROOT / "schedules", schedules)
    evening = schedules / EVENING
    shutil.copytree(schedules / CO, evening)
    spec = (evening / "series.yaml").read_text()
    spec = spec.replace(f"slug: {CO}", f"slug: {EVENING}").replace(
        "title: Psychotherapy as a Co-Created Process", "title: Evening Notes"
    )
    spec = spec.replace("send_day: tuesday", "send_day: thursday")
    spec = spec.replace('send_time: "09:00"', 'send_time: "18:30"')
    spec = spec.replace("cadence: weekly", "cadence: fortnightly").replace("order: 2", "order: 3")
    (evening / "series.yaml").write_text(spec)
    return settings.model_copy(
        update={
            "schedules_dir": schedules,
            "default_timezone": PRACTICE,
            "admin_password": SecretStr(PASSWORD),
        }
    )


def _reset(settings: Settings) -> None:
    """A fresh practice for the next example (API tokens kept); this run's Redis keys only."""
    with session_scope(settings.database_url) as session:
        for table in (ProviderEvent, Delivery, Enrollment, Broadcast, Part, Series, Suppression,
                      Subscriber):  # fmt: skip
            session.execute(delete(table))
    assert settings.redis_url and settings.redis_prefix
    delete_prefixed(settings.redis_url, settings.redis_prefix)
    shutil.rmtree(settings.outbox_dir, ignore_errors=True)


def _build(settings: Settings, world: World) -> dict[int, str]:
    """The world at NOW: reader id -> zone."""
    days = [None if start is None else NOW.date() + dt.timedelta(days=start)
            for start in world.starts]  # fmt: skip
    with session_scope(settings.database_url) as session:
        series_store.sync(session, content.load_all(settings.schedules_dir))
        series_queue.queue_series(session, world.series[0], days[0], NOW)
    zones = {}

    def join(late: bool) -> None:
        for zone, cadence, pause, joins_late in world.readers:
            if joins_late == late:
                paused = None if pause is None else NOW.date() + dt.timedelta(days=pause)
                sid = add_person(settings, NOW, zone, cadence=cadence, paused_until=paused)
                zones[sid] = zone

    join(late=False)
    with session_scope(settings.database_url) as session:
        for slug, day in zip(world.series[1:], days[1:], strict=True):
            series_queue.queue_series(session, slug, day, NOW)
    join(late=True)  # enrolled by the series' starts, as a signup after the queueing is
    with session_scope(settings.database_url) as session:
        RedisQueue(settings).rebuild(session)
    for kind, offset in world.letters:
        if kind == "date":
            when = (NOW.date() + dt.timedelta(days=offset)).isoformat()
        else:
            when = (NOW + dt.timedelta(hours=offset)).isoformat()
        broadcasts.create(
            settings,
            NOTE,
            broadcasts.parse_audience("all"),
            broadcasts.parse_when(when, settings, NOW),
            in_archive=False,
            now=NOW,
        )
    return zones


@dataclass
class Views:
    calendar: Shown
    people: Shown
    moments: set[dt.datetime]
    api_days: Counter[tuple[dt.date, str, int]]
    page_moments: Counter[tuple[str, int, dt.datetime]]
    next_dates: dict[int, dt.datetime | None]


def _read_views(settings: Settings, zones: dict[int, str], admin: TestClient, token: str) -> Views:
    shown = Views(Counter(), Counter(), set(), Counter(), Counter(), {})
    with session_scope(settings.database_url) as session:
        view = views.calendar_view(session, PRACTICE, NOW, weeks=WEEKS)
        for day in view.days:
            for send in day.sends:
                found = views.people_at(session, send.series_slug, send.part_number, send.at, NOW)
                assert found is not None and found.count == send.count == len(found.people)
                shown.moments.add(send.at)
                for p in found.people:
                    local = timing.local_date(send.at, zones[p.id])
                    shown.calendar[(p.id, send.series_slug, send.part_number, local)] += 1
        for sid in zones:
            sub = session.get(Subscriber, sid)
            assert sub is not None
            for c in views.coming_sends(session, sub, NOW, weeks=WEEKS + 1):
                if c.at < END:
                    shown.people[(sid, c.series_slug, c.part_number, c.local_date)] += 1
                    shown.moments.add(c.at)
            shown.next_dates[sid] = views.next_date(session, sub, NOW)
    with time_machine.travel(NOW, tick=False):
        api = admin.get(
            f"/api/v1/calendar?from={NOW.date()}&weeks={WEEKS}",
            headers={"Authorization": f"Bearer {token}"},
        )
        assert api.status_code == 200, api.text
        for e in api.json()["entries"]:
            key = (dt.date.fromisoformat(e["day"]), e["series"], e["part"])
            shown.api_days[key] += e["count"]
        page = admin.get(f"/admin/calendar?weeks={WEEKS}")
        assert page.status_code == 200
        for slug, part, at, count in re.findall(
            r'href="/admin/calendar/([a-z0-9-]+)/(\d+)\?at=([0-9T:Z-]+)".*?'
            r'class="send-count">(\d+) (?:person|people)',
            page.text,
            re.S,
        ):
            moment = dt.datetime.fromisoformat(at.replace("Z", "+00:00"))
            shown.page_moments[(slug, int(part), moment)] += int(count)
    return shown


def _sent(settings: Settings, zones: dict[int, str]) -> list[tuple[int, str, int, dt.datetime]]:
    with session_scope(settings.database_url) as session:
        rows = session.execute(
            select(Delivery.subscriber_id, Series.slug, Delivery.part_number, Delivery.sent_at)
            .join(Series, Series.id == Delivery.series_id)
            .where(Delivery.status == SENT)
        ).all()
    return [(int(sid), slug, int(n), at) for sid, slug, n, at in rows if sid in zones]


@hypothesis_settings(
    max_examples=int(os.environ.get("PROJECTION_EXAMPLES", "25")),
    deadline=None,
    phases=PHASES,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(world=worlds())
def test_the_calendar_equals_the_sends(practice: Settings, world: World) -> None:
    _reset(practice)
    with session_scope(practice.database_url) as session:
        token = auth.create_token(session, "projection")
    with time_machine.travel(NOW, tick=False):  # the admin's session is as old as NOW
        admin, _ = signed_in(practice, PASSWORD)
    zones = _build(practice, world)
    shown = _read_views(practice, zones, admin, token)

    with session_scope(practice.database_url) as session:
        letters = set(
            session.scalars(
                select(Enrollment.next_due_at)
                .join(Series, Series.id == Enrollment.series_id)
                .where(Series.kind == "broadcast", Enrollment.next_due_at.is_not(None))
            )
        )
    # a letter due before NOW (a date whose slot has passed far east) goes at the first tick
    for moment in sorted({max(m, NOW) for m in shown.moments | letters if m < END}):
        tick(practice, moment)
    tick(practice, END - dt.timedelta(microseconds=1))  # the sweep: anything nobody showed

    sent = _sent(practice, zones)
    sent_at = Counter(
        (sid, slug, n, timing.local_date(at, zones[sid])) for sid, slug, n, at in sent
    )
    assert shown.calendar == sent_at
    assert shown.people == sent_at
    assert shown.api_days == Counter(
        (timing.local_date(at, PRACTICE), slug, n) for _, slug, n, at in sent
    )
    assert shown.page_moments == Counter((slug, n, at) for _, slug, n, at in sent)
    # and what was sent keeps each series' start, for readers who joined after it was queued too
    starts = {
        slug: NOW.date() + dt.timedelta(days=start)
        for slug, start in zip(world.series, world.starts, strict=True)
        if start is not None
    }
    for sid, slug, _, at in sent:
        assert slug not in starts or timing.local_date(at, zones[sid]) >= starts[slug], (sid, slug)
    first: dict[int, dt.datetime] = {}
    for sid, _, _, at in sent:
        first[sid] = min(at, first.get(sid, at))
    for sid, shown_next in shown.next_dates.items():
        if sid in first:
            assert shown_next == first[sid], sid
        else:
            assert shown_next is None or shown_next >= END, sid
