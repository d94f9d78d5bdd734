"""Helpers for the account tests: make an account, sign it in, compute its two-factor codes."""

from __future__ import annotations

import re
import time

import httpx
import pyotp
from web_helpers import csrf

from newsletter.core.config import Settings
from newsletter.services import accounts, auth
from newsletter.store.db import session_scope

OWNER_EMAIL, OWNER_PASSWORD = "maya@harbour.example", "owner's long password"
ASSISTANT_EMAIL, ASSISTANT_PASSWORD = "sam@harbour.example", "assistant's long password"
SECRET_RE = re.compile(r"data-totp-secret>([A-Z2-7]+)<")
PENDING_RE = re.compile(r'name="pending" value="([^"]+)"')
CODES_RE = re.compile(r"<li><code>([0-9a-f]{6}-[0-9a-f]{6})</code></li>")


def make_account(
    settings: Settings, email: str, password: str | None, role: str = accounts.OWNER
) -> int:
    with session_scope(settings.database_url) as session:
        hashed = auth.hash_password(password) if password else None
        return accounts.create(session, email, email.split("@")[0].title(), role, hashed).id


def code_at(secret: str, steps_ahead: int = 0) -> str:
    """The code for the step `steps_ahead` after now (a later step is still within the window,
    and is not refused as already used after a code of this step signed in)."""
    return pyotp.TOTP(secret).at(time.time() + steps_ahead * 30)


def sign_in_account(c: httpx.Client, email: str, password: str) -> httpx.Response:
    """Post the login form with an email address and password (the first step)."""
    token = csrf(c, "/admin/login")
    return c.post("/admin/login", data={"csrf_token": token, "email": email, "password": password})


def second_step(c: httpx.Client, first: httpx.Response, code: str) -> httpx.Response:
    """Post a code on the two-factor page the first step showed."""
    match = PENDING_RE.search(first.text)
    assert match, first.text[:400]
    token = csrf(c, "/admin/login")
    return c.post(
        "/admin/login/code", data={"csrf_token": token, "pending": match.group(1), "code": code}
    )


def enrol(c: httpx.Client) -> tuple[str, list[str]]:
    """Turn two-factor sign-in on for the signed-in account: (its secret, its recovery codes)."""
    page = c.get("/admin/account")
    secret = SECRET_RE.search(page.text)
    enrol_value = re.search(r'name="enrol" value="([^"]+)"', page.text)
    assert secret and enrol_value, page.text[:400]
    r = c.post(
        "/admin/account/two-factor",
        data={
            "csrf_token": csrf(c, "/admin/account"),
            "enrol": enrol_value.group(1),
            "code": code_at(secret.group(1)),
        },
    )
    assert r.status_code == 200, r.text[:400]
    codes = CODES_RE.findall(r.text)
    assert len(codes) == 10
    return secret.group(1), codes
