"""Practice settings page: saved values reach every email and public page; the environment wins."""

from __future__ import annotations

import re

import pytest
import web_helpers
from control_chars import CONTROL_CHARACTERS, NOT_IN_TEXT, name
from engine_support import add_person, outbox_mails, ship, utc
from fastapi.testclient import TestClient
from pydantic import SecretStr

from newsletter.core.config import Settings
from newsletter.engine.tick import tick
from newsletter.store import practice
from newsletter.store.db import session_scope
from newsletter.web import forms

PASSWORD = "a calm and long password"
NOW = utc(2027, 1, 4, 12)  # a Monday


def signed_in(settings: Settings) -> TestClient:
    """An entered client signed in as the admin (the caller leaves it)."""
    c = web_helpers.admin_app_client(settings)
    c.__enter__()
    web_helpers.sign_in(c, PASSWORD)
    return c


@pytest.fixture
def admin(settings: Settings, admin_client: TestClient) -> tuple[Settings, TestClient]:
    return web_helpers.as_admin(settings, PASSWORD), admin_client


DETAILS = {
    "practice_name": "Riverside Counselling",
    "from_name": "Dr Maya Okafor",
    "from_email": "maya@riverside.example.net",
    "reply_to": "office@riverside.example.net",
    "postal_address": "12 Mill Lane, Hebden Bridge HX7 8AA, UK",
    "default_timezone": "Europe/London",
    "signup_heading": "Letters from the counselling room",
    "signup_intro": "Short pieces about how therapy works.\n\nOne a week, at a calm hour.",
    "care_note": "Not advice for you; in a crisis call 999 or Samaritans on 116 123.",
    "poster_line": "Short letters about therapy, one a week.",
}


def _save(c: TestClient, values: dict[str, str]) -> int:
    token = web_helpers.csrf(c, "/admin/settings")
    return c.post("/admin/settings", data={"csrf_token": token, **values}).status_code


def test_saved_details_reach_the_sent_email_and_the_signup_page(
    admin: tuple[Settings, TestClient],
) -> None:
    settings, c = admin
    assert "Practice settings" in c.get("/admin/settings").text
    assert _save(c, DETAILS) == 303
    page = c.get("/admin/settings").text
    assert 'value="Riverside Counselling"' in page and "fixed by the server" not in page

    public = c.get("/").text
    assert "Letters from the counselling room" in public
    assert "One a week, at a calm hour." in public
    assert "12 Mill Lane, Hebden Bridge" in public and "Samaritans on 116 123" in public
    assert "Example Therapy Practice" not in public and "100 Sample Street" not in public

    ship(settings, NOW)
    add_person(settings, NOW)
    # part 1 of the first series is due by then; the test is the entry point: it passes the
    # effective settings, as `newsletter tick` and the worker's tasks do
    tick(practice.effective_settings(settings), utc(2027, 1, 12, 12))
    mails = outbox_mails(settings)
    assert mails, "nothing was sent"
    mail = mails[-1]
    assert mail["From"] == "Dr Maya Okafor <maya@riverside.example.net>"
    assert mail["Reply-To"] == "office@riverside.example.net"
    text = mail.get_body(preferencelist=("plain",)).get_content()
    html = mail.get_body(preferencelist=("html",)).get_content()
    for body in (text, html):
        assert "Riverside Counselling" in body
        assert "12 Mill Lane, Hebden Bridge HX7 8AA, UK" in body
        assert "Samaritans on 116 123" in body
        assert "100 Sample Street" not in body


def test_an_environment_variable_wins_and_the_page_says_it_is_fixed(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NEWSLETTER_FROM_NAME", "Set By The Server")
    fixed = settings.model_copy(
        update={"admin_password": SecretStr(PASSWORD), "from_name": "Set By The Server"}
    )
    c = signed_in(fixed)
    try:
        page = c.get("/admin/settings").text
        assert "fixed by the server" in page and "NEWSLETTER_FROM_NAME" in page
        assert 'name="from_name"' not in page  # no box to type into
        assert _save(c, {**DETAILS, "from_name": "Typed In The Browser"}) == 303
        with session_scope(fixed.database_url) as db:
            assert "from_name" not in practice.saved(db)
            db.add(practice.PracticeSetting(key="from_name", value="Sneaked Into The Table"))
        practice.forget()
        shown = practice.effective_settings(fixed)
        assert shown.from_name == "Set By The Server"
        assert shown.postal_address == DETAILS["postal_address"]  # the rest still applies
    finally:
        c.__exit__(None, None, None)


def test_bad_values_are_refused_with_the_field_named(admin: tuple[Settings, TestClient]) -> None:
    settings, c = admin
    token = web_helpers.csrf(c, "/admin/settings")
    r = c.post(
        "/admin/settings",
        data={
            "csrf_token": token,
            "reply_to": "not an address",
            "default_timezone": "Mars/Olympus",
            "postal_address": "ok street",
        },
    )
    assert r.status_code == 422
    assert "Not an email address" in r.text and "is not a time zone" in r.text
    with session_scope(settings.database_url) as db:
        assert practice.saved(db) == {}  # nothing half-saved


def test_emptying_a_box_goes_back_to_the_default(admin: tuple[Settings, TestClient]) -> None:
    settings, c = admin
    assert _save(c, {"practice_name": "Riverside Counselling"}) == 303
    assert practice.effective_settings(settings).practice == "Riverside Counselling"
    assert _save(c, {"practice_name": ""}) == 303
    assert practice.effective_settings(settings).practice == settings.from_name


ONE_LINE_FIELDS = [f.name for f in practice.FIELDS if f.kind not in ("text", "origins")]


@pytest.mark.parametrize("field", ONE_LINE_FIELDS)
def test_each_control_character_is_refused_at_the_field_through_the_page(
    settings: Settings, field: str
) -> None:
    """Every control character (C0, DEL, C1, U+2028/U+2029) in a one-line field: 422, the
    field's own error names the character, and nothing is saved."""
    s = settings.model_copy(update={"admin_password": SecretStr(PASSWORD)})
    c, _ = web_helpers.signed_in(s, PASSWORD)
    with c:
        for char in CONTROL_CHARACTERS:
            good = DETAILS[field]
            value = good[:3] + char + good[3:]
            token = web_helpers.csrf(c, "/admin/settings")
            r = c.post("/admin/settings", data={"csrf_token": token, **DETAILS, field: value})
            assert r.status_code == 422, (field, name(char))
            errors = re.findall(r'<p class="field-error" id="([a-z_]+)-error">([^<]*)</p>', r.text)
            assert [f for f, _ in errors] == [field], (field, name(char), errors)
            if field != "default_timezone":  # unknown zone: refused by the zone rule
                # the page names what arrived: a browser's CR is a line break (web/forms.py)
                assert name(forms.line_breaks(char)) in errors[0][1]
            with session_scope(s.database_url) as db:
                assert practice.saved(db) == {}  # nothing half-saved


@pytest.mark.parametrize("field", [f.name for f in practice.FIELDS if f.kind == "text"])
def test_a_text_field_refuses_other_control_characters_through_the_page(
    admin: tuple[Settings, TestClient], field: str
) -> None:
    settings, c = admin
    for char in NOT_IN_TEXT:
        if forms.line_breaks(char) == "\n":
            continue  # a lone CR is a browser's line break: LF before the check (below)
        r = c.post(
            "/admin/settings",
            data={"csrf_token": web_helpers.csrf(c, "/admin/settings"), field: f"One{char}two"},
        )
        assert r.status_code == 422 and f'id="{field}-error"' in r.text, name(char)
        assert name(char) in r.text
    assert _save(c, {field: "One line.\r\n\rAnother\tparagraph."}) == 303
    with session_scope(settings.database_url) as db:
        assert practice.saved(db) == {field: "One line.\n\nAnother\tparagraph."}
