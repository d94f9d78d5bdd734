"""A browser's line breaks: CRLF and lone CR in form text are read as LF before any check (every
admin form, both encodings, the API's letter body); uploaded files are kept byte for byte."""

from __future__ import annotations

import datetime as dt
import io
import re
from collections.abc import Iterator

import pytest
from engine_support import add_person, ship
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from sqlalchemy import select
from starlette.datastructures import FormData, Headers, UploadFile
from time_machine import TimeMachineFixture
from web_helpers import as_admin, csrf, signed_in

from newsletter.core.config import Settings
from newsletter.store.db import session_scope
from newsletter.store.models import Broadcast, Part, PracticeSetting
from newsletter.web.forms import line_breaks, normalised

PASSWORD = "a calm and long password"
MONDAY = dt.datetime(2027, 3, 1, 12, tzinfo=dt.UTC)
URLENCODED = {"content-type": "application/x-www-form-urlencoded"}


# --- the normaliser ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("typed", "read"),
    [
        ("One\r\nTwo", "One\nTwo"),  # what every browser sends
        ("One\rTwo", "One\nTwo"),  # old Mac line ends, pasted
        ("One\nTwo", "One\nTwo"),
        ("One\r\n\r\nTwo\rThree\nFour", "One\n\nTwo\nThree\nFour"),  # mixed
        ("\r\r\n", "\n\n"),  # a lone CR, then a CRLF
        ("\n\r", "\n\n"),  # LF then CR is two line breaks, not one
        ("tab\there, \x0b and \u2028 stay", "tab\there, \x0b and \u2028 stay"),  # refused later
        ("", ""),
    ],
)
def test_line_breaks_read_as_lf(typed: str, read: str) -> None:
    assert line_breaks(typed) == read


@hsettings(derandomize=True, max_examples=300)
@given(st.lists(st.sampled_from(["\r", "\n", "\r\n", "a", " ", "+", "%", "\x0b"])).map("".join))
def test_line_breaks_keep_every_line_and_leave_no_cr(text: str) -> None:
    read = line_breaks(text)
    assert "\r" not in read
    assert read.split("\n") == re.split(r"\r\n|\r|\n", text)


def test_text_values_are_normalised_and_uploaded_files_kept_byte_for_byte() -> None:
    csv_bytes = b'email,name\r\nana@example.org,"Ana\r\nLine"\rbo@example.org,Bo\r\n'
    upload = UploadFile(io.BytesIO(csv_bytes), filename="people.csv", headers=Headers({}))
    form = FormData(
        [("body", "One\r\n\r\nTwo"), ("part_body", "a\rb"), ("file", upload), ("part_body", "c")]
    )
    read = normalised(form)
    assert read.multi_items() == [
        ("body", "One\n\nTwo"),
        ("part_body", "a\nb"),
        ("file", upload),
        ("part_body", "c"),
    ]
    assert read["file"] is upload
    assert upload.file.getvalue() == csv_bytes  # type: ignore[attr-defined]


def test_a_password_is_kept_exactly_as_sent() -> None:
    form = FormData([("password", "a\r\nb\rc"), ("csrf_token", "t")])
    assert normalised(form)["password"] == "a\r\nb\rc"


# --- through the app -----------------------------------------------------------------------


@pytest.fixture
def admin(settings: Settings, time_machine: TimeMachineFixture) -> Iterator[TestClient]:
    """A signed-in admin on Monday 1 March 2027, with one reader of the shipped series."""
    time_machine.move_to(MONDAY, tick=False)
    ship(settings, MONDAY)
    add_person(settings, MONDAY, "Europe/London")
    c, _token = signed_in(as_admin(settings, PASSWORD), PASSWORD)
    with c:
        yield c


def _letters(settings: Settings) -> list[str]:
    """The saved text of every broadcast, oldest first."""
    with session_scope(settings.database_url) as db:
        rows = db.scalars(
            select(Part.body_md)
            .join(Broadcast, Broadcast.series_id == Part.series_id)
            .order_by(Broadcast.id)
        )
        return list(rows)


@pytest.mark.parametrize(
    ("body", "saved"),
    [
        ("One+line%0D%0A%0D%0ATwo", "One line\n\nTwo\n"),  # a browser: upper-case escapes
        ("One+line%0d%0a%0d%0atwo", "One line\n\ntwo\n"),  # lower-case escapes
        ("One%0D%0DTwo%0DThree", "One\n\nTwo\nThree\n"),  # lone CRs
        ("a%2Bb+c%0D%0A%250D%0D%0A%2525", "a+b c\n%0D\n%25\n"),  # + / %2B / escaped '%' kept
    ],
)
def test_a_urlencoded_letter_is_saved_with_lf(
    admin: TestClient, settings: Settings, body: str, saved: str
) -> None:
    token = csrf(admin, "/admin/broadcasts")
    raw = f"csrf_token={token}&title=Closed&summary=&action=confirm&when=now&body_md={body}"
    r = admin.post("/admin/broadcasts", content=raw.encode(), headers=URLENCODED)
    assert r.status_code == 303, r.text
    assert _letters(settings) == [saved]


def test_a_multipart_letter_is_saved_with_lf(admin: TestClient, settings: Settings) -> None:
    fields = {
        "csrf_token": csrf(admin, "/admin/broadcasts"),
        "title": "Closed",
        "action": "confirm",
        "when": "now",
        "body_md": "Dear reader,\r\n\r\nWe are closed.\rBack on Monday.\r\n",
    }
    r = admin.post("/admin/broadcasts", data=fields, files={"unused": ("x.txt", b"a\r\nb")})
    assert r.status_code == 303, r.text
    assert _letters(settings) == ["Dear reader,\n\nWe are closed.\nBack on Monday.\n"]


def test_a_letter_with_another_control_character_is_still_refused(
    admin: TestClient, settings: Settings
) -> None:
    token = csrf(admin, "/admin/broadcasts")
    raw = f"csrf_token={token}&title=Closed&action=confirm&when=now&body_md=One%0D%0ATwo%0B"
    r = admin.post("/admin/broadcasts", content=raw.encode(), headers=URLENCODED)
    assert r.status_code == 400 and "control character (U+000B)" in r.text
    assert _letters(settings) == []


def test_an_uploaded_csv_is_kept_byte_for_byte(admin: TestClient, settings: Settings) -> None:
    csv_bytes = b'email,name\r\nnew@example.org,"Ana\r\nLine"\r\nother@example.org,Bo\r'
    r = admin.post(
        "/admin/import",
        data={"csrf_token": csrf(admin, "/admin/import")},
        files={"file": ("people.csv", csv_bytes, "text/csv")},
    )
    assert r.status_code == 200, r.text
    [kept] = (settings.var_dir / "imports").glob("*.csv")
    assert kept.read_bytes() == csv_bytes


def test_the_signup_intro_is_saved_with_lf_and_shown_as_paragraphs(
    admin: TestClient, settings: Settings
) -> None:
    intro = "Short pieces about therapy.\r\n\r\nOne a week,\ra calm hour."
    token = csrf(admin, "/admin/settings")
    r = admin.post("/admin/settings", data={"csrf_token": token, "signup_intro": intro})
    assert r.status_code == 303, r.text
    with session_scope(settings.database_url) as db:
        saved = db.get(PracticeSetting, "signup_intro")
        assert saved is not None
        assert saved.value == "Short pieces about therapy.\n\nOne a week,\na calm hour."
    page = admin.get("/").text
    assert re.search(
        r"<p[^>]*>Short pieces about therapy.</p>\s*<p>One a week,\sa calm hour.</p>", page
    )


def test_the_api_reads_a_letter_written_with_crlf(
    admin: TestClient, settings: Settings, token: str
) -> None:
    letter = {"title": "Closed", "body_md": "Dear reader,\r\n\r\nWe are closed.\r"}
    r = admin.post("/api/v1/broadcasts", json=letter, headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 201, r.text
    assert _letters(settings) == ["Dear reader,\n\nWe are closed.\n"]
