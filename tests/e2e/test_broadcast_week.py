"""A broadcast for "next Tuesday at each reader's slot", three zones, a week of `tick --now`.

Two of the three readers also have a series part due that Tuesday: they get the broadcast on
Tuesday at their local send time and the series part on Wednesday at the same local time; the
part after it is back on its usual Tuesday. Each reader gets the broadcast exactly once, every
email carries the care note, and the archive's feed lists the broadcast.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import feedparser
import pytest
from engine_support import add_person, cli_tick, outbox_mails, ship, utc
from fastapi.testclient import TestClient
from sqlalchemy import select
from typer.testing import CliRunner

from newsletter.content.letter import letter
from newsletter.core.config import Settings
from newsletter.services import broadcasts
from newsletter.store.db import session_scope
from newsletter.store.models import SENT, Delivery, Series
from newsletter.web.app import create_app

pytestmark = pytest.mark.slow

START = utc(2027, 2, 1, 0, 0)  # Monday
END = START + dt.timedelta(days=9)  # past the following Tuesday everywhere
STEP = dt.timedelta(minutes=30)
runner = CliRunner()


def test_broadcast_next_tuesday_at_each_readers_slot(settings: Settings) -> None:
    ship(settings, START)
    zones = ("America/New_York", "Europe/London", "Asia/Tokyo")
    people = {
        "America/New_York": add_person(settings, START, "America/New_York"),
        "Europe/London": add_person(settings, START, "Europe/London"),
        "Asia/Tokyo": add_person(settings, START, "Asia/Tokyo", slugs=[]),  # no series
    }
    info = broadcasts.create(
        settings,
        letter("The office is closed next week", "When we are back.", "We are closed.\n"),
        broadcasts.parse_audience("all"),
        broadcasts.parse_when("2027-02-02", settings, START),
        in_archive=True,
        now=START,
    )
    assert (info.recipients, info.state) == (3, "scheduled")

    now = START
    while now < END:
        now += STEP
        cli_tick(now)
        cli_tick(now)  # a duplicate tick changes nothing

    with session_scope(settings.database_url) as session:
        slug = {s.id: s.slug for s in session.scalars(select(Series))}
        rows = list(session.scalars(select(Delivery).order_by(Delivery.sent_at, Delivery.id)))
    assert all(r.status == SENT for r in rows)
    mails = outbox_mails(settings)
    assert len(mails) == len(rows)

    def got(zone: str) -> list[tuple[str, int, str]]:
        tz = ZoneInfo(zone)
        out = []
        for r in rows:
            if r.subscriber_id == people[zone]:
                assert r.sent_at is not None
                local = r.sent_at.astimezone(tz)
                out.append((slug[r.series_id][:6], r.part_number, f"{local:%a %d %H:%M}"))
        return out

    letter_slug = info.slug[:6]
    for zone in ("America/New_York", "Europe/London"):
        assert got(zone) == [
            (letter_slug, 1, "Tue 02 09:00"),  # the broadcast, at the reader's slot
            ("myths-", 1, "Wed 03 09:00"),  # the series part moved to the next day
            ("myths-", 2, "Tue 09 09:00"),  # and the series is back on its Tuesday
        ]
    assert got("Asia/Tokyo") == [(letter_slug, 1, "Tue 02 09:00")]
    assert [m["Subject"] for m in mails].count("The office is closed next week") == len(zones)
    for mail in mails:  # every email carries the care note, in both parts
        for part in ("plain", "html"):
            body = mail.get_body(preferencelist=(part,))
            assert body is not None
            assert "call or text 988" in " ".join(body.get_content().split()), part
    with TestClient(create_app(settings), base_url="https://news.example.org") as client:
        feed = feedparser.parse(client.get("/archive/rss.xml").content)
    assert feed.bozo == 0
    assert f"https://news.example.org/archive/{info.slug}/1" in [e.link for e in feed.entries]
    done = broadcasts.get(settings, info.id)
    assert done is not None and (done.state, done.sent, done.waiting) == ("sent", 3, 0)
