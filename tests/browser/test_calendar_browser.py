"""The therapist's calendar in Chromium agrees with the engine: with a broadcast pending on a
series day, the series part shows the next day; a series queued behind another shows in the
week it starts."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from browser_support import ADMIN_PASSWORD

from newsletter.content.letter import letter
from newsletter.core import timing
from newsletter.core.config import Settings
from newsletter.engine import series_queue
from newsletter.queue.dueset import RedisQueue
from newsletter.services import broadcasts, roster
from newsletter.store.db import session_scope

pytestmark = pytest.mark.browser

MYTHS, CO = "myths-about-psychotherapy", "co-created-process"


def _day_of(page: Any, slug: str, part: int) -> str:
    """The calendar day heading of the first send of `slug` part `part`."""
    link = page.locator(f"a.send[href^='/admin/calendar/{slug}/{part}?']").first
    heading = link.locator("xpath=ancestor::li[contains(@class, 'calendar-day')]/h3")
    return (heading.text_content() or "").split(" today")[0].strip()


def test_the_calendar_moves_a_part_off_a_broadcast_day_and_shows_a_series_queued_behind(
    admin_server: tuple[str, Settings], browser: Any, artifacts: Path
) -> None:
    base, settings = admin_server
    now = dt.datetime.now(dt.UTC)  # the server runs on the real clock
    zone = settings.default_timezone
    with session_scope(settings.database_url) as session:
        series_queue.queue_series(session, MYTHS, None, now)
    roster.add_subscriber(settings, email="ana@example.org", timezone=zone, confirmed=True)
    today = timing.local_date(now, zone)
    # Co-Created queued behind Myths, from the Monday six weeks on (after Myths' four parts)
    start = today + dt.timedelta(days=42 - today.weekday())
    with session_scope(settings.database_url) as session:
        series_queue.queue_series(session, CO, start, now)
        RedisQueue(settings).rebuild(session)
    # Myths part 2 is the second Tuesday 09:00 after now; a letter that day moves it a day
    first = timing.next_slot(now, zone, 1, "09:00")
    second_tuesday = timing.local_date(first, zone) + dt.timedelta(weeks=1)
    broadcasts.create(
        settings,
        letter("Closed for a day", "A note.", "The practice is closed on Friday.\n"),
        broadcasts.parse_audience("all"),
        broadcasts.parse_when(second_tuesday.isoformat(), settings, now),
        in_archive=False,
        now=now,
    )

    context = browser.new_context(locale="en-GB", viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.goto(f"{base}/admin/login")
    page.fill("#password", ADMIN_PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/admin")
    page.goto(f"{base}/admin/calendar?weeks=12")
    page.screenshot(path=str(artifacts / "calendar-broadcast-and-queue.png"), full_page=True)

    def heading(day: dt.date) -> str:
        return f"{day:%a} {day.day} {day:%b %Y}"

    assert _day_of(page, MYTHS, 2) == heading(second_tuesday + dt.timedelta(days=1))
    assert _day_of(page, MYTHS, 3) == heading(second_tuesday + dt.timedelta(weeks=1))
    assert page.locator(f"a.send[href^='/admin/calendar/{MYTHS}/2?']").count() == 1
    assert _day_of(page, CO, 1) == heading(start + dt.timedelta(days=1))  # its first Tuesday
    context.close()
