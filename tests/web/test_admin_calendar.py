"""The calendar page: counts on the right days in the admin's zone, each count opens its people."""

from __future__ import annotations

import re

import time_machine
from engine_support import add_person, ship, utc
from pydantic import SecretStr
from web_helpers import csrf, signed_in

from newsletter.core.config import Settings
from newsletter.store.db import session_scope
from newsletter.store.models import Subscriber

PASSWORD = "a calm and long password"
NOW = utc(2027, 1, 4, 12)  # Monday


def test_the_calendar_shows_counts_per_day_and_lists_the_people(settings: Settings) -> None:
    s = settings.model_copy(
        update={"admin_password": SecretStr(PASSWORD), "default_timezone": "America/New_York"}
    )
    ship(s, NOW)
    london = [add_person(s, NOW, "Europe/London") for _ in range(3)]
    tokyo = add_person(s, NOW, "Asia/Tokyo")
    with time_machine.travel(NOW, tick=False):
        c, _ = signed_in(s, PASSWORD)
        page = c.get("/admin/calendar").text
        assert (
            'Times are in <strong><span class="zone" title="America/New_York">'
            "US Eastern (New York)</span></strong>"
        ) in page
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


def test_queueing_names_who_is_added_and_the_chosen_start_shows_everywhere(
    settings: Settings,
) -> None:
    s = settings.model_copy(update={"admin_password": SecretStr(PASSWORD)})
    ship(s, NOW, queue=False)  # both series are drafts
    ada = add_person(s, NOW, "Europe/London", name="Ada")
    add_person(s, NOW, "Europe/London", name="Ben")
    cy = add_person(s, NOW, "Europe/London", name="Cy")
    with session_scope(s.database_url) as session:
        person = session.get(Subscriber, cy)
        assert person is not None
        person.takes_new_series = False  # chose particular series only
    with time_machine.travel(NOW, tick=False):
        c, _ = signed_in(s, PASSWORD)
        card = _card(c.get("/admin/series").text, "myths-about-psychotherapy")
        assert "Will add:" in card and ">Ada</a>" in card and ">Ben</a>" in card
        assert "Not added, by their own choice (1)" in card and ">Cy</a>" in card
        r = c.post(
            "/admin/series/myths-about-psychotherapy/queue",
            data={"csrf_token": csrf(c, "/admin/series"), "start": "2027-02-04"},
        )
        assert r.status_code == 303
        card = _card(c.get("/admin/series").text, "myths-about-psychotherapy")
        assert "Queued Mon 4 Jan 2027, to start on <strong>Thu 4 Feb 2027</strong>" in card
        page = c.get(f"/admin/subscribers/{ada}").text
        # Myths goes out on Tuesdays at 09:00: the first Tuesday from 4 Feb, then weekly
        for day in ("Tue 9 Feb 2027, 09:00", "Tue 16 Feb 2027", "Tue 2 Mar 2027"):
            assert day in page
        assert "Tue 9 Feb 2027" not in c.get(f"/admin/subscribers/{cy}").text


def _card(page: str, slug: str) -> str:
    return page.split(f'id="series-{slug}"', 1)[1].split("</section>", 1)[0]


def test_the_calendar_pages_run_as_many_statements_for_200_readers_as_for_10(
    settings: Settings,
) -> None:
    from scale_support import add_readers, page_statements

    s = settings.model_copy(
        update={"admin_password": SecretStr(PASSWORD), "default_timezone": "America/New_York"}
    )
    ship(s, NOW)
    add_readers(s, NOW, 10)
    with time_machine.travel(NOW, tick=False):
        c, _ = signed_in(s, PASSWORD)

        def counts() -> list[int]:
            page = c.get("/admin/calendar").text
            link = re.search(
                r'href="(/admin/calendar/myths-about-psychotherapy/1\?at=[^"]+)"', page
            )
            assert link
            return [
                page_statements(s, c, "GET", "/admin/calendar"),
                page_statements(s, c, "GET", link.group(1).replace("&amp;", "&")),
            ]

        few = counts()
        add_readers(s, NOW, 190, start=10)
        many = counts()
    assert few == many
