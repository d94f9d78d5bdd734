"""The series page at scale: its counts and queue-form facts in a fixed number of statements."""

from __future__ import annotations

import time_machine
from engine_support import add_person, ship, utc
from scale_support import add_readers, page_statements
from web_helpers import as_admin, signed_in

from newsletter.core.config import Settings

NOW = utc(2027, 1, 4, 12)  # Monday


def test_the_series_page_runs_as_many_statements_for_200_readers_as_for_10(
    settings: Settings,
) -> None:
    s = as_admin(settings)
    ship(s, NOW, queue=False)  # drafts: the queue form names who it would add
    add_readers(s, NOW, 10)
    with time_machine.travel(NOW, tick=False):
        c, _ = signed_in(s)
        few = page_statements(s, c, "GET", "/admin/series")
        add_readers(s, NOW, 190, start=10)
        many = page_statements(s, c, "GET", "/admin/series")
        page = c.get("/admin/series").text
    assert few == many
    # 200 readers, 180 active; every sixth chose particular series only (34 of the 180)
    assert "will reach 146 active subscribers" in page
    assert "Not added, by their own choice (34)" in page


def test_a_live_series_offers_to_add_readers_not_to_queue_it_again(settings: Settings) -> None:
    s = as_admin(settings)
    ship(s, NOW, queue=False)
    with time_machine.travel(NOW, tick=False):
        c, token = signed_in(s)
        drafts = c.get("/admin/series").text
        assert drafts.count("Queue this series") == 2
        queued = c.post(
            "/admin/series/myths-about-psychotherapy/queue", data={"csrf_token": token, "start": ""}
        )
        assert queued.status_code == 303
        for _ in range(2):  # joined after, in no series yet
            add_person(s, NOW, slugs=[])
        page = c.get("/admin/series").text
    assert page.count("Queue this series") == 1  # the draft only
    assert "Add these 2 readers to it" in page
