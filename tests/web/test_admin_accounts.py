"""Accounts in the admin: roles (an assistant is refused the owner's pages), two-factor sign-in,
invitations, sign out everywhere, and the operator's password beside the accounts."""

from __future__ import annotations

import html
import re

import httpx
import pytest
from accounts_support import (
    ASSISTANT_EMAIL,
    ASSISTANT_PASSWORD,
    OWNER_EMAIL,
    OWNER_PASSWORD,
    code_at,
    enrol,
    make_account,
    second_step,
    sign_in_account,
)
from fastapi.testclient import TestClient
from web_helpers import (
    ADMIN_PASSWORD,
    add_series,
    admin_app_client,
    as_admin,
    csrf,
    outbox,
    sign_in,
)

from newsletter.core.config import Settings
from newsletter.services import accounts, auth
from newsletter.store.db import session_scope
from newsletter.store.models import Account, Subscriber
from newsletter.web import words

# The owner's pages: (method, path). The mail provider's page joins this list when it lands.
OWNER_ROUTES = [
    ("GET", "/admin/export.csv"),
    ("GET", "/admin/export.json"),
    ("GET", "/admin/subscribers/{id}/export.json"),
    ("POST", "/admin/subscribers/{id}/erase"),
    ("GET", "/admin/accounts"),
    ("POST", "/admin/accounts/invite"),
    ("POST", "/admin/accounts/{owner}/remove"),
    ("POST", "/admin/accounts/{owner}/sign-out"),
    ("POST", "/admin/accounts/{owner}/two-factor-off"),
    ("POST", "/admin/accounts/{owner}/role"),
    ("POST", "/admin/accounts/{owner}/invite-again"),
    ("GET", "/admin/settings/mail"),
    ("POST", "/admin/settings/mail/sendgrid"),
    ("POST", "/admin/settings/mail/smtp"),
    ("POST", "/admin/settings/mail/test"),
    ("POST", "/admin/settings/mail/disconnect"),
    ("GET", "/admin/settings/webhooks"),  # outgoing webhooks may carry addresses
    ("POST", "/admin/settings/webhooks"),
    ("POST", "/admin/settings/webhooks/1/test"),
    ("POST", "/admin/settings/webhooks/1/remove"),
    ("GET", "/admin/settings/tokens"),  # a token reads and writes readers through the API
    ("POST", "/admin/settings/tokens"),
    ("POST", "/admin/settings/tokens/1/revoke"),
]


def a_reader(settings: Settings) -> int:
    with session_scope(settings.database_url) as session:
        person = Subscriber(
            email="reader@example.org",
            email_key="reader@example.org",
            timezone="America/Denver",
            public_id="pub-reader-1",
            status="active",
        )
        session.add(person)
        session.flush()
        return person.id


def signed_in_as(settings: Settings, email: str, password: str) -> TestClient:
    c = admin_app_client(settings)
    r = sign_in_account(c, email, password)
    assert (r.status_code, r.headers.get("location")) == (303, "/admin"), r.text[:300]
    return c


@pytest.mark.parametrize(("method", "path"), OWNER_ROUTES)
def test_an_assistant_is_refused_the_owners_pages(
    settings: Settings, method: str, path: str
) -> None:
    owner = make_account(settings, OWNER_EMAIL, OWNER_PASSWORD)
    make_account(settings, ASSISTANT_EMAIL, ASSISTANT_PASSWORD, accounts.ASSISTANT)
    url = path.format(id=a_reader(settings), owner=owner)
    with signed_in_as(settings, ASSISTANT_EMAIL, ASSISTANT_PASSWORD) as c:
        data = {
            "csrf_token": csrf(c, "/admin"),
            "confirm": "erase",
            "email": "x@example.org",
            "name": "X",
            "role": "assistant",
        }
        r = c.request(method, url, data=data if method == "POST" else None)
        assert r.status_code == 403
        text = html.unescape(r.text)
        assert "Only the owner can do this" in text and "Ask the practice's owner" in text
    with session_scope(settings.database_url) as session:  # nothing happened
        assert session.query(Subscriber).count() == 1
        assert len(accounts.listing(session)) == 2


def test_the_owner_and_an_assistant_see_their_own_menus(settings: Settings) -> None:
    make_account(settings, OWNER_EMAIL, OWNER_PASSWORD)
    make_account(settings, ASSISTANT_EMAIL, ASSISTANT_PASSWORD, accounts.ASSISTANT)
    add_series(settings, "calm", "Calm")
    with signed_in_as(settings, OWNER_EMAIL, OWNER_PASSWORD) as c:
        assert c.get("/admin/export.csv").status_code == 200
        assert 'href="/admin/accounts"' in c.get("/admin").text
    with signed_in_as(settings, ASSISTANT_EMAIL, ASSISTANT_PASSWORD) as c:
        page = c.get("/admin").text
        name = ASSISTANT_EMAIL.split("@")[0].title()
        assert f"signed in as {name}" in html.unescape(page)  # the footer names who is signed in
        assert 'href="/admin/accounts"' not in page and 'href="/admin/account"' in page
        assert c.get("/admin/series").status_code == 200  # writing and scheduling stay open


def test_a_wrong_password_or_unknown_address_is_refused_alike(settings: Settings) -> None:
    make_account(settings, OWNER_EMAIL, OWNER_PASSWORD)
    with admin_app_client(settings) as c:
        wrong = sign_in_account(c, OWNER_EMAIL, "not the password at all")
        unknown = sign_in_account(c, "nobody@example.org", OWNER_PASSWORD)
        assert wrong.status_code == unknown.status_code == 401
        assert (
            "don&#39;t match an account" in wrong.text
            and "don&#39;t match an account" in unknown.text
        )


def test_two_factor_sign_in_refuses_a_wrong_code_and_a_recovery_code_used_twice(
    settings: Settings,
) -> None:
    make_account(settings, OWNER_EMAIL, OWNER_PASSWORD)
    with signed_in_as(settings, OWNER_EMAIL, OWNER_PASSWORD) as c:
        secret, codes = enrol(c)
        assert 'data-two-factor="on"' in c.get("/admin/account").text
    with admin_app_client(settings) as c:
        first = sign_in_account(c, OWNER_EMAIL, OWNER_PASSWORD)
        assert first.status_code == 200 and "two-factor code" in first.text  # not signed in yet
        assert c.get("/admin").status_code == 303
        right = code_at(secret, 1)
        wrong = second_step(c, first, "000000" if right != "000000" else "111111")
        assert wrong.status_code == 401
        assert "isn&#39;t right" in wrong.text and "recovery codes" in wrong.text
        used = second_step(c, first, codes[0])
        assert used.status_code == 303
    with admin_app_client(settings) as c:
        first = sign_in_account(c, OWNER_EMAIL, OWNER_PASSWORD)
        again = second_step(c, first, codes[0])
        assert again.status_code == 401
        text = html.unescape(again.text)
        assert "already used" in text and "another recovery code" in text
        assert second_step(c, first, code_at(secret, 1)).status_code == 303
        assert c.get("/admin").status_code == 200


def test_an_enrolment_with_a_wrong_code_keeps_the_same_key(settings: Settings) -> None:
    make_account(settings, OWNER_EMAIL, OWNER_PASSWORD)
    with signed_in_as(settings, OWNER_EMAIL, OWNER_PASSWORD) as c:
        page = c.get("/admin/account").text
        enrol_value = page.split('name="enrol" value="')[1].split('"')[0]
        secret = page.split("data-totp-secret>")[1].split("<")[0]
        r = c.post(
            "/admin/account/two-factor",
            data={"csrf_token": csrf(c, "/admin/account"), "enrol": enrol_value, "code": "12"},
        )
        assert r.status_code == 400 and "isn&#39;t right" in r.text
        assert f"data-totp-secret>{secret}<" in r.text


def test_signing_out_ends_the_accounts_sessions_everywhere(settings: Settings) -> None:
    make_account(settings, OWNER_EMAIL, OWNER_PASSWORD)
    laptop = signed_in_as(settings, OWNER_EMAIL, OWNER_PASSWORD)
    phone = signed_in_as(settings, OWNER_EMAIL, OWNER_PASSWORD)
    assert phone.get("/admin").status_code == 200
    r = laptop.post(
        "/admin/account/sign-out-everywhere", data={"csrf_token": csrf(laptop, "/admin")}
    )
    assert r.headers["location"] == "/admin/login"
    assert phone.get("/admin").status_code == 303
    assert laptop.get("/admin").status_code == 303


def test_the_owner_signs_an_assistant_out_everywhere_and_removes_them(settings: Settings) -> None:
    make_account(settings, OWNER_EMAIL, OWNER_PASSWORD)
    helper = make_account(settings, ASSISTANT_EMAIL, ASSISTANT_PASSWORD, accounts.ASSISTANT)
    assistant = signed_in_as(settings, ASSISTANT_EMAIL, ASSISTANT_PASSWORD)
    with signed_in_as(settings, OWNER_EMAIL, OWNER_PASSWORD) as owner:
        token = csrf(owner, "/admin/accounts")
        owner.post(f"/admin/accounts/{helper}/sign-out", data={"csrf_token": token})
        assert assistant.get("/admin").status_code == 303
        owner.post(f"/admin/accounts/{helper}/remove", data={"csrf_token": token})
        assert ASSISTANT_EMAIL not in owner.get("/admin/accounts").text
    assert sign_in_account(assistant, ASSISTANT_EMAIL, ASSISTANT_PASSWORD).status_code == 401


def test_the_only_owner_cant_be_removed(settings: Settings) -> None:
    owner = make_account(settings, OWNER_EMAIL, OWNER_PASSWORD)
    other = make_account(settings, "other@harbour.example", "other owner's password")
    with signed_in_as(settings, OWNER_EMAIL, OWNER_PASSWORD) as c:
        token = csrf(c, "/admin/accounts")
        c.post(f"/admin/accounts/{owner}/remove", data={"csrf_token": token})  # not yourself
        c.post(f"/admin/accounts/{other}/remove", data={"csrf_token": token})
    with session_scope(settings.database_url) as session:
        assert [p.email for p, _ in accounts.listing(session)] == [OWNER_EMAIL]
        with pytest.raises(accounts.AccountError, match="only one"):
            accounts.remove(session, accounts.OPERATOR, owner)
    with admin_app_client(as_admin(settings)) as c:  # the operator: not "yourself"
        sign_in(c, ADMIN_PASSWORD)
        token = csrf(c, "/admin/accounts")
        last = c.post(f"/admin/accounts/{owner}/remove", data={"csrf_token": token})
        assert last.status_code == 409 and "Make someone else an owner first" in last.text


def test_an_invitation_by_email_makes_an_assistant_who_signs_in(settings: Settings) -> None:
    make_account(settings, OWNER_EMAIL, OWNER_PASSWORD)
    with signed_in_as(settings, OWNER_EMAIL, OWNER_PASSWORD) as owner:
        r = owner.post(
            "/admin/accounts/invite",
            data={
                "csrf_token": csrf(owner, "/admin/accounts"),
                "email": ASSISTANT_EMAIL,
                "name": "Sam",
                "role": "assistant",
            },
        )
        assert r.headers["location"] == "/admin/accounts"
        assert "invited" in owner.get("/admin/accounts").text
    [mail] = outbox(settings)
    path = next(w for w in mail.text.split() if "/admin/invite/" in w).removeprefix(
        settings.public_url
    )
    with admin_app_client(settings) as c:
        assert sign_in_account(c, ASSISTANT_EMAIL, "").status_code == 401  # no password yet
        r = c.post(
            path, data={"csrf_token": csrf(c, "/admin/login"), "password": ASSISTANT_PASSWORD}
        )
        assert r.headers["location"] == "/admin/login"
        assert "already used" in html.unescape(c.get(path).text)
        assert sign_in_account(c, ASSISTANT_EMAIL, ASSISTANT_PASSWORD).status_code == 303
        assert c.get("/admin/accounts").status_code == 403


def test_the_server_password_still_signs_in_as_the_owner_beside_accounts(
    settings: Settings,
) -> None:
    """NEWSLETTER_ADMIN_PASSWORD with an empty email: the operator, with the owner's rights."""
    make_account(settings, OWNER_EMAIL, OWNER_PASSWORD)
    with admin_app_client(as_admin(settings)) as c:
        sign_in(c, ADMIN_PASSWORD)
        assert c.get("/admin/accounts").status_code == 200
        assert "server's admin password" in c.get("/admin/account").text


def test_an_accounts_wrong_passwords_and_codes_count_against_the_connection(
    settings: Settings,
) -> None:
    """The login rules of every sign-in: after auth.LOGIN_LIMIT failures (passwords or codes,
    for any account) the connection waits, even with the right password."""
    make_account(settings, OWNER_EMAIL, OWNER_PASSWORD)
    with signed_in_as(settings, OWNER_EMAIL, OWNER_PASSWORD) as c:
        secret, _ = enrol(c)
    with session_scope(settings.database_url) as session:
        sealed = session.query(Account).one().totp_secret
        assert sealed and secret not in sealed  # sealed under the secret key, not kept as is
    with admin_app_client(settings) as c:
        first = sign_in_account(c, OWNER_EMAIL, OWNER_PASSWORD)
        for _ in range(auth.LOGIN_LIMIT - 1):
            assert second_step(c, first, "not-a-code").status_code == 401
        assert sign_in_account(c, ASSISTANT_EMAIL, "wrong password here").status_code == 401
        refused = sign_in_account(c, OWNER_EMAIL, OWNER_PASSWORD)
        assert refused.status_code == 429 and "Retry-After" in refused.headers


def shown(page: str) -> str:
    """A page's text without its tags (the words a reader of the page sees)."""
    return html.unescape(re.sub(r"<[^>]+>", " ", page))


def _change_password(c: TestClient, current: str, new: str) -> httpx.Response:
    token = csrf(c, "/admin/account")
    data = {"csrf_token": token, "current_password": current, "password": new}
    return c.post("/admin/account/password", data=data)


def test_changing_your_password_keeps_this_session_and_ends_the_others(
    settings: Settings,
) -> None:
    make_account(settings, OWNER_EMAIL, OWNER_PASSWORD)
    laptop = signed_in_as(settings, OWNER_EMAIL, OWNER_PASSWORD)
    phone = signed_in_as(settings, OWNER_EMAIL, OWNER_PASSWORD)
    r = _change_password(laptop, OWNER_PASSWORD, "a brand new long password")
    assert r.headers["location"] == "/admin/account"
    assert "new password is saved" in html.unescape(laptop.get("/admin/account").text)
    assert phone.get("/admin").status_code == 303  # the other session ended
    with admin_app_client(settings) as c:
        assert sign_in_account(c, OWNER_EMAIL, OWNER_PASSWORD).status_code == 401
        assert sign_in_account(c, OWNER_EMAIL, "a brand new long password").status_code == 303


def test_changing_your_password_needs_the_current_one_and_a_long_new_one(
    settings: Settings,
) -> None:
    make_account(settings, OWNER_EMAIL, OWNER_PASSWORD)
    with signed_in_as(settings, OWNER_EMAIL, OWNER_PASSWORD) as c:
        wrong = _change_password(c, "not my password at all", "a brand new long password")
        assert wrong.status_code == 400
        assert "isn't your current password" in html.unescape(wrong.text)
        short = _change_password(c, OWNER_PASSWORD, "short")
        assert short.status_code == 400 and "Choose a longer one" in short.text
        assert c.get("/admin").status_code == 200  # still signed in
    with admin_app_client(settings) as c:
        assert sign_in_account(c, OWNER_EMAIL, OWNER_PASSWORD).status_code == 303


def test_wrong_current_passwords_count_against_the_connection(settings: Settings) -> None:
    make_account(settings, OWNER_EMAIL, OWNER_PASSWORD)
    with signed_in_as(settings, OWNER_EMAIL, OWNER_PASSWORD) as c:
        for _ in range(auth.LOGIN_LIMIT + 1):
            _change_password(c, "not my password at all", "a brand new long password")
        refused = _change_password(c, OWNER_PASSWORD, "a brand new long password")
        assert refused.status_code == 429 and "Try again in" in refused.text
    with session_scope(settings.database_url) as session:
        assert auth.hash_matches(session.query(Account).one().password_hash or "", OWNER_PASSWORD)


def test_the_operator_is_told_how_to_change_the_servers_password(settings: Settings) -> None:
    with admin_app_client(as_admin(settings)) as c:
        sign_in(c, ADMIN_PASSWORD)
        r = _change_password(c, ADMIN_PASSWORD, "a brand new long password")
        assert r.status_code == 409 and "newsletter admin set-password" in r.text


def _role(c: TestClient, account: int, role: str) -> httpx.Response:
    token = csrf(c, "/admin/accounts")
    return c.post(f"/admin/accounts/{account}/role", data={"csrf_token": token, "role": role})


def _roles(settings: Settings) -> dict[str, str]:
    with session_scope(settings.database_url) as session:
        return {p.email: p.role for p, _ in accounts.listing(session)}


def test_the_owner_changes_roles_but_never_leaves_no_owner(settings: Settings) -> None:
    owner = make_account(settings, OWNER_EMAIL, OWNER_PASSWORD)
    helper = make_account(settings, ASSISTANT_EMAIL, ASSISTANT_PASSWORD, accounts.ASSISTANT)
    with signed_in_as(settings, OWNER_EMAIL, OWNER_PASSWORD) as c:
        last = _role(c, owner, "assistant")
        assert last.status_code == 409
        assert "Make someone else an owner first" in html.unescape(last.text)
        assert not words.banned_in(shown(last.text))
        assert _roles(settings)[OWNER_EMAIL] == "owner"
        assert _role(c, helper, "owner").headers["location"] == "/admin/accounts"
        assert _role(c, owner, "assistant").headers["location"] == "/admin/account"
        assert c.get("/admin/accounts").status_code == 403  # now an assistant
    assert _roles(settings) == {OWNER_EMAIL: "assistant", ASSISTANT_EMAIL: "owner"}
    with signed_in_as(settings, ASSISTANT_EMAIL, ASSISTANT_PASSWORD) as c:
        assert _role(c, helper, "nonsense").status_code == 400
        assert _role(c, helper, "assistant").status_code == 409


def _invitation_path(settings: Settings, mail_index: int) -> str:
    mail = outbox(settings)[mail_index]
    url = next(w for w in mail.text.split() if "/admin/invite/" in w)
    return url.removeprefix(settings.public_url)


def test_sending_an_invitation_again_stops_the_older_link(settings: Settings) -> None:
    make_account(settings, OWNER_EMAIL, OWNER_PASSWORD)
    helper = make_account(settings, ASSISTANT_EMAIL, None, accounts.ASSISTANT)
    with signed_in_as(settings, OWNER_EMAIL, OWNER_PASSWORD) as owner:
        assert "Send the invitation again" in owner.get("/admin/accounts").text
        token = csrf(owner, "/admin/accounts")
        first = owner.post(f"/admin/accounts/{helper}/invite-again", data={"csrf_token": token})
        assert first.headers["location"] == "/admin/accounts"
        owner.post(f"/admin/accounts/{helper}/invite-again", data={"csrf_token": token})
    older, newer = _invitation_path(settings, 0), _invitation_path(settings, 1)
    with admin_app_client(settings) as c:
        gone = c.get(older)
        assert gone.status_code == 410 and "newest email" in html.unescape(gone.text)
        data = {"csrf_token": csrf(c, "/admin/login"), "password": ASSISTANT_PASSWORD}
        assert c.post(older, data=data).status_code == 410
        assert c.post(newer, data=data).headers["location"] == "/admin/login"
        assert sign_in_account(c, ASSISTANT_EMAIL, ASSISTANT_PASSWORD).status_code == 303
    with signed_in_as(settings, OWNER_EMAIL, OWNER_PASSWORD) as owner:
        token = csrf(owner, "/admin/accounts")
        again = owner.post(f"/admin/accounts/{helper}/invite-again", data={"csrf_token": token})
        assert again.status_code == 409 and "already accepted" in again.text
        assert not words.banned_in(shown(again.text))
        gone = owner.post("/admin/accounts/9999/invite-again", data={"csrf_token": token})
        assert gone.status_code == 404 and "Invite the person again" in gone.text
    assert len(outbox(settings)) == 2
