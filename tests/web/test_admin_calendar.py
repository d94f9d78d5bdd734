"""The calendar page: counts on the right days in the admin's zone, each count opens its people."""

from __future__ import annotations

import re

import time_machine
from engine_support import add_person, ship, utc
from fastapi.testclient import TestClient
from pydantic import SecretStr

from newsletter.core.config import Settings
from newsletter.web.app import create_app

PASSWORD = "a calm and long password"
NOW = utc(2027, 1, 4, 12)  # Monday


def _signed_in(settings: Settings) -> TestClient:
    c = TestClient(
        create_app(settings), base_url="https://news.example.org", follow_redirects=False
    )
    token = re.search(r'name="csrf_token" value="([^"]+)"', c.get("/admin/login").text)
    assert token
    r = c.post("/admin/login", data={"csrf_token": token.group(1), "password": PASSWORD})
    assert r.status_code == 303
    return c


def test_the_calendar_shows_counts_per_day_and_lists_the_people(settings: Settings) -> None:
    s = settings.model_copy(
        update={"admin_password": SecretStr(PASSWORD), "default_timezone": "America/New_York"}
    )
    ship(s, NOW)
    london = [add_person(s, NOW, "Europe/London") for _ in range(3)]
    tokyo = add_person(s, NOW, "Asia/Tokyo")
    with time_machine.travel(NOW, tick=False):
        c = _signed_in(s)
        page = c.get("/admin/calendar").text
        assert "Times are in <strong>America/New_York</strong>" in page
        # London readers get part 1 on Tue 5 Jan 09:00 their time = 04:00 in New York
        day = page.split("<h3>Tue 5 Jan 2027", 1)[1].split("calendar-day", 1)[0]
        assert "04:00" in day and "3 people" in day and "part 1" in day
        assert "Tue 09:00 in Europe/London (3)" in day
        # Tokyo's Tuesday 09:00 is Monday 19:00 in New York
        monday = page.split("<h3>Mon 4 Jan 2027", 1)[1].split("calendar-day", 1)[0]
        assert "19:00" in monday and "1 person" in monday
        link = re.search(r'href="(/admin/calendar/myths-about-psychotherapy/1\?at=[^"]+)"', day)
        assert link
        people = c.get(link.group(1).replace("&amp;", "&"))
        assert people.status_code == 200
        assert people.text.count("/admin/subscribers/") == 3
        for sid in london:
            assert f'/admin/subscribers/{sid}"' in people.text
        assert f'/admin/subscribers/{tokyo}"' not in people.text
        assert c.get("/admin/calendar/myths-about-psychotherapy/1?at=nonsense").status_code == 404
