"""The admin's broadcasts page: preview a letter, schedule it for chosen readers, cancel it;
errors say what is wrong and keep what was written."""

from __future__ import annotations

import datetime as dt
import html
from collections.abc import Iterator

import pytest
from engine_support import add_person, ship
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import SecretStr
from time_machine import TimeMachineFixture
from web_helpers import csrf, sign_in

from newsletter.core.config import Settings
from newsletter.services import broadcasts
from newsletter.web.app import create_app

PASSWORD = "a calm and long password"
MONDAY = dt.datetime(2027, 3, 1, 12, tzinfo=dt.UTC)


@pytest.fixture
def app(settings: Settings) -> FastAPI:
    return create_app(settings.model_copy(update={"admin_password": SecretStr(PASSWORD)}))


@pytest.fixture
def client(app: FastAPI, time_machine: TimeMachineFixture) -> Iterator[TestClient]:
    time_machine.move_to(MONDAY, tick=False)
    with TestClient(app, base_url="https://news.example.org", follow_redirects=False) as c:
        sign_in(c, PASSWORD)
        yield c


def _form(client: TestClient, **values: str) -> dict[str, str]:
    return {"csrf_token": csrf(client, "/admin/broadcasts"), **values}


def test_preview_then_schedule_then_cancel(client: TestClient, settings: Settings) -> None:
    ship(settings, MONDAY)
    add_person(settings, MONDAY, "Europe/London")
    add_person(settings, MONDAY, "Asia/Tokyo", slugs=[])
    page = client.get("/admin/broadcasts")
    assert page.status_code == 200 and "No broadcasts yet" in page.text
    assert 'href="/admin/broadcasts" aria-current="page"' in page.text
    letter = {"title": "Closed on Friday", "summary": "Back Monday.", "body_md": "We are *closed*."}
    shown = client.post(
        "/admin/broadcasts", data=_form(client, **letter, action="preview", when="now")
    )
    assert shown.status_code == 200
    assert "srcdoc=" in shown.text and "<em>closed</em>" in html.unescape(shown.text)
    assert "'unsafe-inline'" in shown.headers["content-security-policy"]
    assert broadcasts.list_all(settings) == []  # a preview stores nothing
    done = client.post(
        "/admin/broadcasts",
        data=_form(
            client,
            **letter,
            action="schedule",
            audience="series",
            series="myths-about-psychotherapy",
            when="date",
            on_date="2027-03-05",
            archive="on",
        ),
    )
    assert done.status_code == 303
    [info] = broadcasts.list_all(settings)
    assert (info.recipients, info.in_archive, info.state) == (1, True, "scheduled")
    listed = client.get("/admin/broadcasts").text
    assert "is scheduled for 1 reader" in listed and "Closed on Friday" in listed
    cancelled = client.post(f"/admin/broadcasts/{info.id}/cancel", data=_form(client))
    assert cancelled.status_code == 303
    assert broadcasts.list_all(settings)[0].state == "cancelled"


def test_errors_keep_the_letter(client: TestClient) -> None:
    letter = {"title": "Hello", "body_md": "Text kept."}
    r = client.post(
        "/admin/broadcasts",
        data=_form(client, **letter, action="schedule", when="date", on_date="2001-01-01"),
    )
    assert r.status_code == 400 and "in the past" in r.text and "Text kept." in r.text
    r = client.post("/admin/broadcasts", data=_form(client, title=" ", body_md="x"))
    assert r.status_code == 400 and "needs a title" in r.text
    r = client.post("/admin/broadcasts", data={"title": "x", "body_md": "y"})  # no CSRF token
    assert r.status_code == 400


def test_a_broadcast_is_not_a_series_on_the_series_and_new_person_pages(
    client: TestClient, settings: Settings
) -> None:
    """Stored as a one-part series of kind `broadcast`, a letter must not show up as a series
    card (whose Queue button it would refuse) nor as a series to choose for a new person."""
    ship(settings, MONDAY)
    add_person(settings, MONDAY, "Europe/London")
    letter = {"title": "Closed on Friday", "summary": "Back Monday.", "body_md": "Closed."}
    done = client.post(
        "/admin/broadcasts",
        data=_form(client, **letter, action="schedule", audience="all", when="now"),
    )
    assert done.status_code == 303 and len(broadcasts.list_all(settings)) == 1
    assert "is scheduled" in client.get(done.headers["location"]).text  # the notice, once
    for path in ("/admin/series", "/admin/subscribers/new"):
        page = client.get(path)
        assert page.status_code == 200
        assert "Common Myths About Psychotherapy" in page.text  # the series are listed ...
        assert "Closed on Friday" not in page.text, path  # ... the letter is not
