"""Signing in and out: /admin/login (password, then a two-factor code when turned on) and /admin/logout.

An email address signs in to that account; an empty one means the operator's password
(NEWSLETTER_ADMIN_PASSWORD or `newsletter admin set-password`). Every attempt, whoever it is for,
goes through the same per-connection counting (an IPv6 connection is its /64) and Argon2 slots.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from newsletter.core.config import Settings
from newsletter.services import accounts, accounts_totp, auth
from newsletter.store import accounts as account_store
from newsletter.store.db import session_scope
from newsletter.web.admin.common import (
    current_session,
    form_of,
    page,
    require_admin,
    settings_of,
    who_of,
)
from newsletter.web.security import client_ip

public = APIRouter(prefix="/admin")  # the login pages only
protected = APIRouter(prefix="/admin", dependencies=[Depends(require_admin)])

CODE_SECONDS = 5 * 60  # the code step must follow the password step within this


def wait_text(seconds: int) -> str:
    """A wait in words: '30 seconds', '1 minute', '8 minutes' (minutes rounded up)."""
    if seconds < 120:
        return f"{seconds} second{'s' if seconds != 1 else ''}"
    return f"{-(-seconds // 60)} minutes"


def _pending(settings: Settings) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(settings.secret, salt="newsletter.admin-second-factor")


def _login_state(settings: Settings) -> dict[str, bool]:
    with session_scope(settings.database_url) as session:
        return {
            "configured": auth.password_configured(settings, session),
            "env_ignored": auth.env_password_ignored(settings, session),
            "has_owner": account_store.owner_exists(session),
        }


def _login_page(
    request: Request, error: str | None, status: int = 200, **extra: object
) -> Response:
    context = {**_login_state(settings_of(request)), "error": error, **extra}
    return page(request, "admin/login.html", context, status)


def signed_in_response(
    settings: Settings,
    url: str,
    epoch: str,
    fingerprint: str = "",
    account: int = 0,
    generation: int = 0,
) -> Response:
    response = RedirectResponse(url, status_code=303)
    value = auth.make_session(settings, epoch, fingerprint, account, generation)
    response.set_cookie(auth.SESSION_COOKIE, value, **auth.cookie_options(settings))
    return response


async def _refused(
    request: Request, ip: str, error: str, template: str, **extra: object
) -> Response:
    """Count a failed attempt for this connection and show the page again (401)."""
    delay = await run_in_threadpool(auth.record_failure, settings_of(request), ip)
    if delay:
        error += f" You can try again in {wait_text(delay)}."
    if template == "admin/login.html":
        return _login_page(request, error, 401, **extra)
    return page(request, template, {"error": error, **extra}, 401)


async def _blocked(request: Request, ip: str) -> Response | None:
    wait = await run_in_threadpool(auth.login_blocked, settings_of(request), ip)
    if not wait:
        return None
    response = _login_page(
        request,
        f"Too many wrong passwords from your connection. Please try again in {wait_text(wait)}.",
        429,
    )
    response.headers["Retry-After"] = str(wait)
    return response


@public.get("/login", response_class=HTMLResponse, include_in_schema=False)
def login_page(request: Request) -> Response:
    if current_session(request):
        return RedirectResponse("/admin", status_code=303)
    return _login_page(request, None)


@public.post("/login", include_in_schema=False)
async def login(request: Request) -> Response:
    """Every blocking step (Redis, the database, Argon2) runs in a thread: a flood of wrong
    passwords never stalls the event loop, and Argon2 runs at most auth.HASH_SLOTS at once."""
    settings = settings_of(request)
    form = await form_of(request)
    ip = client_ip(request)
    blocked = await _blocked(request, ip)
    if blocked is not None:  # refused before the password is even looked at
        return blocked
    email = str(form.get("email") or "").strip()[:254]
    password = str(form.get("password") or "")[:1000]
    if not email:  # the operator's password
        checked = await auth.check_password(settings, password)
        if not checked.ok:
            return await _refused(request, ip, "That password isn't right.", "admin/login.html")
        await run_in_threadpool(auth.clear_failures, settings, ip)
        return signed_in_response(settings, "/admin", checked.epoch, checked.fingerprint)
    found = await accounts.check_login(settings, email, password)
    if not found.ok:
        error = "That email address and password don't match an account."
        return await _refused(request, ip, error, "admin/login.html", email=email)
    if found.two_factor:
        pending = _pending(settings).dumps({"a": found.account, "g": found.generation})
        return page(request, "admin/login_code.html", {"pending": pending, "error": None})
    await run_in_threadpool(auth.clear_failures, settings, ip)
    return signed_in_response(settings, "/admin", found.epoch, "", found.account, found.generation)


_CODE_ERRORS = {
    accounts_totp.WRONG: "That code isn't right. Type the six digits your app shows now "
    "(they change every 30 seconds), or one of your recovery codes.",
    accounts_totp.REUSED: "That code was already used: each code, and each recovery code, works "
    "once. Wait for the next code in your app, or use another recovery code. If you have "
    "neither, ask the owner to turn two-factor sign-in off for your account.",
}


@public.post("/login/code", include_in_schema=False)
async def login_code(request: Request) -> Response:
    settings = settings_of(request)
    form = await form_of(request)
    ip = client_ip(request)
    blocked = await _blocked(request, ip)
    if blocked is not None:
        return blocked
    pending = str(form.get("pending") or "")[:1000]
    try:
        held = _pending(settings).loads(pending, max_age=CODE_SECONDS)
        account_id, generation = int(held["a"]), int(held["g"])
    except (BadSignature, SignatureExpired, KeyError, TypeError, ValueError):
        return _login_page(
            request, "That took too long, or the page was old. Please sign in again.", 400
        )
    code = str(form.get("code") or "")[:100]
    result, epoch = await run_in_threadpool(
        accounts.check_code, settings, account_id, generation, code, auth.clock()
    )
    if result != accounts_totp.OK:
        return await _refused(
            request, ip, _CODE_ERRORS[result], "admin/login_code.html", pending=pending
        )
    await run_in_threadpool(auth.clear_failures, settings, ip)
    return signed_in_response(settings, "/admin", epoch, "", account_id, generation)


@protected.post("/logout", include_in_schema=False)
async def logout(request: Request) -> Response:
    """Sign out. An account's sign-out ends its sessions on every device (its generation moves
    on); the operator's ends every session cookie issued so far, as before accounts existed."""
    await form_of(request)
    person = who_of(request)
    with session_scope(settings_of(request).database_url) as db:
        accounts.end_sessions(db, person)
    response = RedirectResponse("/admin/login", status_code=303)
    response.delete_cookie(
        auth.SESSION_COOKIE, path="/", secure=settings_of(request).public_is_https, httponly=True
    )
    return response
