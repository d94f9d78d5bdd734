"""The series page at scale: its counts and queue-form facts in a fixed number of statements."""

from __future__ import annotations

import pytest
import time_machine
from engine_support import add_person, ship, utc
from scale_support import add_readers, page_statements
from web_helpers import as_admin, loop_watch, signed_in

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


def test_the_forms_that_write_every_readers_place_run_off_the_event_loop(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Queue, pause, resume and reload write or re-time a place for every reader (90,000 rows
    at 100k readers) and cancelling a broadcast takes back its claims: inside `async def` each
    held every page, public ones too, until it was done. Each lands, and none on the loop."""
    from newsletter.services import broadcasts, series_admin

    on_loop: list[bool] = []
    for name in ("queue_series", "pause_series", "resume_series", "reload_series"):
        monkeypatch.setattr(series_admin, name, loop_watch(getattr(series_admin, name), on_loop))
    monkeypatch.setattr(broadcasts, "cancel", loop_watch(broadcasts.cancel, on_loop))
    s = as_admin(settings)
    ship(s, NOW, queue=False)
    add_readers(s, NOW, 5)
    myths = "/admin/series/myths-about-psychotherapy"
    with time_machine.travel(NOW, tick=False):
        c, token = signed_in(s)
        form = {"csrf_token": token}
        assert c.post(f"{myths}/queue", data={**form, "start": ""}).status_code == 303
        assert c.post(f"{myths}/pause", data=form).status_code == 303
        assert c.post(f"{myths}/resume", data=form).status_code == 303
        assert c.post("/admin/series/reload", data=form).status_code == 303
        cancelled = c.post("/admin/broadcasts/1/cancel", data=form, follow_redirects=True)
    assert "No such broadcast" in cancelled.text
    assert on_loop == [False] * 5
