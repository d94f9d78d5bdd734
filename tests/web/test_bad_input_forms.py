"""Bad form posts (public signup, confirm, preferences, unsubscribe; admin forms) never get a 500.

Each answer is a page (or redirect) with a 2xx, 3xx or 4xx status; a refused preferences save
changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, example, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from pydantic import SecretStr
from sqlalchemy import select
from web_helpers import csrf

from newsletter.content import series as content
from newsletter.core import tokens
from newsletter.core.config import Settings
from newsletter.services import roster
from newsletter.store import series as series_store
from newsletter.store.db import session_scope
from newsletter.store.models import Subscriber
from newsletter.web.app import create_app

PASSWORD = "a calm and long password"
BASE = "https://news.example.org"
PROPERTY = hsettings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
VALUE = st.one_of(
    st.text(max_size=30),
    st.sampled_from(
        ["", " ", "\x00", "a\x00b@example.org", "\ud800", "\u202e", "x" * 10_000, "2027-02-30",
         "9999-12-31", "0001-01-01", "+002027-01-01", "2027-13-01", "yesterday", "-1",
         "99999999999999999999", "Europe/London", "../../etc/passwd", "weekly", "fortnightly",
         "never", "myths-about-psychotherapy", "ann@example.org", "save", "resubscribe", "yes",
         "List-Unsubscribe=One-Click", "=cmd|' /C calc'!A0", "<script>alert(1)</script>"]
    ),
)  # fmt: skip
FIELDS = ["email", "name", "timezone", "series", "cadence", "paused_until", "action", "form",
          "takes_new_series", "website", "start", "q", "status", "page", "to", "confirm",
          "consented"]  # fmt: skip
FORM = st.lists(st.tuples(st.sampled_from(FIELDS), VALUE), max_size=8)


@pytest.fixture
def setup(settings: Settings) -> Iterator[tuple[TestClient, Settings, str]]:
    admin = settings.model_copy(update={"admin_password": SecretStr(PASSWORD)})
    with session_scope(admin.database_url) as session:
        series_store.sync(session, content.load_all(admin.schedules_dir))
    roster.add_subscriber(admin, email="ann@example.org", confirmed=True)
    with session_scope(admin.database_url) as session:
        public_id = session.scalars(select(Subscriber.public_id)).one()
    with TestClient(
        create_app(admin), base_url=BASE, follow_redirects=False, raise_server_exceptions=False
    ) as c:
        yield c, admin, public_id


def encode(pairs: list[tuple[str, str]]) -> bytes:
    """An urlencoded body, lone surrogates and all (percent-encoded as their UTF-8 bytes)."""
    from urllib.parse import quote_plus

    return "&".join(
        f"{quote_plus(k)}={quote_plus(v.encode('utf-8', 'surrogatepass'))}" for k, v in pairs
    ).encode()


def post(c: TestClient, path: str, pairs: list[tuple[str, str]], csrf: str | None) -> int:
    body = encode(([("csrf_token", csrf)] if csrf else []) + pairs)
    r = c.post(path, content=body, headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code < 500, (path, pairs, r.status_code, r.text[:300])
    return r.status_code


def preferences_of(settings: Settings) -> tuple[object, ...]:
    with session_scope(settings.database_url) as session:
        s = session.scalars(select(Subscriber)).one()
        return (s.name, s.timezone, s.cadence, s.paused_until, s.takes_new_series, s.status)


@PROPERTY
@given(pairs=FORM)
def test_public_forms_answer_bad_input_with_a_page(
    setup: tuple[TestClient, Settings, str], pairs: list[tuple[str, str]]
) -> None:
    c, settings, public_id = setup
    form_token = csrf(c, "/")
    post(c, "/subscribe", pairs, form_token)
    token = tokens.make_token(settings.secret, "preferences", public_id)
    before = preferences_of(settings)
    status = post(c, f"/preferences/{token}", pairs, form_token)
    if status == 400:
        assert preferences_of(settings) == before  # a refused save changes nothing
    post(
        c, f"/confirm/{tokens.make_token(settings.secret, 'confirm', public_id)}", pairs, form_token
    )
    for bad in ["x", "%00", "a" * 5000, token + "x", token.upper()]:
        post(c, f"/preferences/{bad}", pairs, form_token)


@PROPERTY
@given(pairs=FORM)
@example(pairs=[("page", "²")])  # found by this test: '²'.isdigit() is True, int('²') raises
def test_admin_forms_answer_bad_input_with_a_page(
    setup: tuple[TestClient, Settings, str], pairs: list[tuple[str, str]]
) -> None:
    c, _settings, _ = setup
    if c.get("/admin").status_code != 200:
        post(c, "/admin/login", [("password", PASSWORD)], csrf(c, "/admin/login"))
    form_token = csrf(c, "/admin/subscribers")
    for path in [
        "/admin/subscribers",
        "/admin/subscribers/search",
        "/admin/series/myths-about-psychotherapy/queue",
        "/admin/series/myths-about-psychotherapy/1/test",
        "/admin/subscribers/1/erase",
        "/admin/subscribers/1/resend",
        "/admin/import",
    ]:
        post(c, path, pairs, form_token)


def test_queue_dates_at_the_edges_of_the_calendar(setup: tuple[TestClient, Settings, str]) -> None:
    c, _settings, _ = setup
    post(c, "/admin/login", [("password", PASSWORD)], csrf(c, "/admin/login"))
    form_token = csrf(c, "/admin/series")
    for start in ["2027-02-30", "9999-12-31", "0001-01-01", "2027-2-3", "  "]:
        post(c, "/admin/series/myths-about-psychotherapy/queue", [("start", start)], form_token)
    r = c.post(
        "/admin/series/myths-about-psychotherapy/queue",
        data={"csrf_token": form_token, "start": "9999-12-31"},
    )
    assert r.status_code == 303
    assert "ten years" in c.get(r.headers["location"]).text


def test_preferences_pause_dates_at_the_edges(setup: tuple[TestClient, Settings, str]) -> None:
    c, settings, public_id = setup
    token = tokens.make_token(settings.secret, "preferences", public_id)
    form_token = csrf(c, "/")
    for day in ["2027-02-30", "9999-12-31", "0001-01-01", "99999-01-01", "2027-02-28T00:00"]:
        before = preferences_of(settings)
        status = post(
            c, f"/preferences/{token}", [("paused_until", day), ("cadence", "weekly")], form_token
        )
        if status == 400:
            assert preferences_of(settings) == before


def test_api_queue_dates_at_the_edges_of_the_calendar(
    setup: tuple[TestClient, Settings, str],
) -> None:
    from newsletter.services import auth

    c, settings, _ = setup
    with session_scope(settings.database_url) as session:
        token = auth.create_token(session, "tests")
    url = "/api/v1/series/myths-about-psychotherapy/queue"
    headers = {"Authorization": f"Bearer {token}"}
    for start, status in [("2027-02-30", 422), ("9999-12-31", 400), ("0001-01-01", 200)]:
        r = c.post(url, json={"start": start}, headers=headers)
        assert r.status_code == status, (start, r.text)
    assert "ten years" in c.post(url, json={"start": "9999-12-31"}, headers=headers).text
