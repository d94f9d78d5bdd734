"""First run and links that let someone in: the setup link, invitations, password resets.

Each used, expired or unknown link gets a page that says what to do next."""

from __future__ import annotations

import datetime as dt
import html

import pytest
from accounts_support import OWNER_EMAIL, OWNER_PASSWORD, make_account, sign_in_account
from web_helpers import admin_app_client, csrf, outbox

from newsletter.core.config import Settings
from newsletter.services import accounts, accounts_links
from newsletter.store.db import session_scope


def setup_link(settings: Settings) -> str:
    with session_scope(settings.database_url) as session:
        url = accounts_links.new_setup_link(settings, session)
    assert url is not None
    return url.removeprefix(settings.public_url)


def test_before_the_owner_exists_the_admin_only_points_at_the_setup_link(
    settings: Settings,
) -> None:
    with admin_app_client(settings) as c:
        r = c.get("/admin/login")
        assert "open the setup link printed by the server" in r.text
        assert 'name="password"' not in r.text  # nothing to sign in with yet
        assert c.get("/admin").headers["location"] == "/admin/login"


def create_owner(c, path: str, password: str = OWNER_PASSWORD):  # type: ignore[no-untyped-def]
    token = csrf(c, "/admin/reset")
    return c.post(
        path,
        data={
            "csrf_token": token,
            "name": "Maya Ellis",
            "email": OWNER_EMAIL,
            "password": password,
        },
    )


def test_the_setup_link_makes_the_owner_once_and_leads_into_settings(settings: Settings) -> None:
    path = setup_link(settings)
    with admin_app_client(settings) as c:
        assert "Create my account" in c.get(path).text
        short = create_owner(c, path, "short")
        assert short.status_code == 400 and "at least 10 characters" in short.text
        r = create_owner(c, path)
        assert (r.status_code, r.headers["location"]) == (303, "/admin/settings")
        assert c.get("/admin/settings").status_code == 200  # signed in as the owner
        assert "Accounts" in c.get("/admin/settings").text
        again = c.get(path)
        assert again.status_code == 410
        assert "already set up" in again.text and "/admin/login" in again.text
        assert create_owner(c, path).status_code == 410  # a second owner can't be made with it
    with session_scope(settings.database_url) as session:
        assert [p.email for p, _ in accounts.listing(session)] == [OWNER_EMAIL]
        assert accounts_links.new_setup_link(settings, session) is None


def test_an_expired_setup_link_says_how_to_get_a_new_one(
    settings: Settings,
    time_machine,  # type: ignore[no-untyped-def]
) -> None:
    path = setup_link(settings)
    time_machine.move_to(dt.datetime.now(dt.UTC) + dt.timedelta(hours=25), tick=False)
    with admin_app_client(settings) as c:
        r = c.get(path)
        assert r.status_code == 410
        assert "has expired" in r.text and "newsletter admin setup-link" in r.text


def test_a_replaced_setup_link_no_longer_works(settings: Settings) -> None:
    old = setup_link(settings)
    new = setup_link(settings)
    with admin_app_client(settings) as c:
        r = c.get(old)
        assert r.status_code == 404 and "newsletter admin setup-link" in r.text
        assert c.get(new).status_code == 200


def reset_link(settings: Settings, email: str) -> str:
    with admin_app_client(settings) as c:
        page = c.post("/admin/reset", data={"csrf_token": csrf(c, "/admin/reset"), "email": email})
        assert "If that address has an account" in page.text
    [mail] = [m for m in outbox(settings) if m.to.endswith(f"<{email}>") or m.to == email]
    link = next(w for w in mail.text.split() if "/admin/reset/" in w)
    return link.removeprefix(settings.public_url)


def choose(c, path: str, password: str):  # type: ignore[no-untyped-def]
    return c.post(path, data={"csrf_token": csrf(c, "/admin/reset"), "password": password})


def test_a_reset_link_works_once(settings: Settings) -> None:
    make_account(settings, OWNER_EMAIL, OWNER_PASSWORD)
    path = reset_link(settings, OWNER_EMAIL)
    with admin_app_client(settings) as c:
        assert "Choose a new password" in c.get(path).text
        r = choose(c, path, "a brand new long password")
        assert (r.status_code, r.headers["location"]) == (303, "/admin/login")
        again = c.get(path)
        assert again.status_code == 410
        assert "already used" in again.text and 'href="/admin/reset"' in again.text
        assert choose(c, path, "yet another long password").status_code == 410
        assert sign_in_account(c, OWNER_EMAIL, OWNER_PASSWORD).status_code == 401
        assert sign_in_account(c, OWNER_EMAIL, "a brand new long password").status_code == 303


def test_a_reset_for_an_unknown_address_sends_nothing_and_says_the_same(settings: Settings) -> None:
    with admin_app_client(settings) as c:
        page = c.post(
            "/admin/reset", data={"csrf_token": csrf(c, "/admin/reset"), "email": "who@example.org"}
        )
        assert "If that address has an account" in page.text
    assert outbox(settings) == []


def test_an_expired_reset_link_says_to_ask_for_a_new_one(
    settings: Settings,
    time_machine,  # type: ignore[no-untyped-def]
) -> None:
    make_account(settings, OWNER_EMAIL, OWNER_PASSWORD)
    path = reset_link(settings, OWNER_EMAIL)
    time_machine.move_to(dt.datetime.now(dt.UTC) + dt.timedelta(minutes=31), tick=False)
    with admin_app_client(settings) as c:
        r = c.get(path)
        assert r.status_code == 410 and "has expired" in r.text and "Ask for a new" in r.text


@pytest.mark.parametrize("path", ["/admin/reset/nonsense.token", "/admin/invite/nonsense.token"])
def test_a_made_up_link_is_refused_with_what_to_do(settings: Settings, path: str) -> None:
    with admin_app_client(settings) as c:
        r = c.get(path)
        assert r.status_code == 404 and "doesn't work" in html.unescape(r.text)


@pytest.mark.parametrize("link", ["setup", "invite", "reset"])
def test_the_access_log_never_holds_a_link_that_lets_someone_in(link: str) -> None:
    from newsletter.web.security import redact_path

    assert redact_path(f"/admin/{link}/abc.DEF-123") == f"/admin/{link}/…"
    assert redact_path("/admin/reset") == "/admin/reset"
