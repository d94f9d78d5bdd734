"""The admin's broadcasts page: preview a letter, schedule it for chosen readers, cancel it;
errors say what is wrong and keep what was written."""

from __future__ import annotations

import datetime as dt
import html
import re
from collections.abc import Iterator

import pytest
from engine_support import add_person, ship
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import SecretStr
from time_machine import TimeMachineFixture
from web_helpers import csrf, outbox, sign_in

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


def _hidden(page: str) -> dict[str, str | list[str]]:
    """The letter the confirmation page carries in its hidden fields."""
    found: dict[str, str | list[str]] = {}
    for name, value in re.findall(r'type="hidden" name="([a-z_]+)" value="([^"]*)"', page):
        if name == "csrf_token":
            continue
        value = html.unescape(value)
        if name == "series":
            found.setdefault("series", [])
            found["series"].append(value)  # type: ignore[union-attr]
        else:
            found[name] = value
    return found


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
    assert done.status_code == 200 and broadcasts.list_all(settings) == []  # asked first
    question = "Send “Closed on Friday” to 1 reader on Fri 5 Mar 2027, at each reader's usual time?"
    assert question in html.unescape(done.text)
    done = client.post(
        "/admin/broadcasts", data=_form(client, **_hidden(done.text), action="confirm")
    )
    assert done.status_code == 303
    [info] = broadcasts.list_all(settings)
    assert (info.recipients, info.in_archive, info.state) == (1, True, "scheduled")
    listed = client.get("/admin/broadcasts").text
    assert "is scheduled for 1 reader" in listed and "Closed on Friday" in listed
    asked = client.get(f"/admin/broadcasts/{info.id}/cancel")
    assert "Cancel “Closed on Friday”, due on Fri 5 Mar 2027" in html.unescape(asked.text)
    assert "1 reader still waiting will not get it" in asked.text
    assert broadcasts.list_all(settings)[0].state == "scheduled"  # asking changes nothing
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
        data=_form(client, **letter, action="confirm", audience="all", when="now"),
    )
    assert done.status_code == 303 and len(broadcasts.list_all(settings)) == 1
    assert "is scheduled" in client.get(done.headers["location"]).text  # the notice, once
    for path in ("/admin/series", "/admin/subscribers/new"):
        page = client.get(path)
        assert page.status_code == 200
        assert "Common Myths About Psychotherapy" in page.text  # the series are listed ...
        assert "Closed on Friday" not in page.text, path  # ... the letter is not


def test_a_test_send_goes_to_her_and_keeps_the_letter(
    client: TestClient, settings: Settings
) -> None:
    letter = {"title": "Closed on Friday", "summary": "Back Monday.", "body_md": "Closed *Friday*."}
    page = client.get("/admin/broadcasts").text
    assert f'name="test_to" value="{settings.reply_to}"' in page  # her own address, ready
    r = client.post(
        "/admin/broadcasts", data=_form(client, **letter, action="test", test_to="me@example.org")
    )
    assert r.status_code == 200 and "Closed *Friday*." in r.text
    assert "Not sent yet" in r.text  # test mode: kept, in her words
    [mail] = outbox(settings)
    assert mail.to == "me@example.org" and mail.subject == "[Test] Closed on Friday"
    assert broadcasts.list_all(settings) == []
    bad = client.post(
        "/admin/broadcasts", data=_form(client, **letter, action="test", test_to="not an address")
    )
    assert bad.status_code == 400 and "Test not sent" in bad.text


def test_the_date_pickers_start_today_in_the_practice_zone(
    client: TestClient, settings: Settings
) -> None:
    page = client.get("/admin/broadcasts").text  # Monday 1 March 2027, 12:00 UTC
    assert 'id="on_date" name="on_date" aria-label="Day" value="" min="2027-03-01"' in page
    assert 'min="2027-03-01T07:00"' in page  # New York, the practice's zone
    assert 'title="America/New_York">US Eastern (New York)</span> time' in page
