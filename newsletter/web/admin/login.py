"""Signing in and out: /admin/login and /admin/logout."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from newsletter.services import auth
from newsletter.store.db import session_scope
from newsletter.web.admin.common import (
    current_session,
    form_of,
    page,
    require_admin,
    settings_of,
)
from newsletter.web.security import client_ip

public = APIRouter(prefix="/admin")  # the login page only
protected = APIRouter(prefix="/admin", dependencies=[Depends(require_admin)])


def wait_text(seconds: int) -> str:
    """A wait in words: '30 seconds', '1 minute', '8 minutes' (minutes rounded up)."""
    if seconds < 120:
        return f"{seconds} second{'s' if seconds != 1 else ''}"
    return f"{-(-seconds // 60)} minutes"


@public.get("/login", response_class=HTMLResponse, include_in_schema=False)
def login_page(request: Request) -> Response:
    settings = settings_of(request)
    if current_session(request):
        return RedirectResponse("/admin", status_code=303)
    with session_scope(settings.database_url) as session:
        configured = auth.password_configured(settings, session)
        env_ignored = auth.env_password_ignored(settings, session)
    return page(
        request,
        "admin/login.html",
        {"configured": configured, "env_ignored": env_ignored, "error": None},
    )


@public.post("/login", include_in_schema=False)
async def login(request: Request) -> Response:
    """Every blocking step (Redis, the database, Argon2) runs in a thread: a flood of wrong
    passwords never stalls the event loop, and Argon2 runs at most auth.HASH_SLOTS at once."""
    settings = settings_of(request)
    form = await form_of(request)
    ip = client_ip(request)
    wait = await run_in_threadpool(auth.login_blocked, settings, ip)
    if wait:  # refused before the password is even looked at
        response: Response = page(
            request,
            "admin/login.html",
            {
                "configured": True,
                "error": "Too many wrong passwords from your connection. "
                f"Please try again in {wait_text(wait)}.",
            },
            429,
        )
        response.headers["Retry-After"] = str(wait)
        return response
    password = str(form.get("password") or "")[:1000]
    checked = await auth.check_password(settings, password)
    if not checked.ok:
        delay = await run_in_threadpool(auth.record_failure, settings, ip)
        error = "That password isn't right."
        if delay:
            error += f" You can try again in {wait_text(delay)}."
        context = {
            "configured": checked.configured,
            "env_ignored": checked.env_ignored,
            "error": error,
        }
        return page(request, "admin/login.html", context, 401)
    await run_in_threadpool(auth.clear_failures, settings, ip)
    response = RedirectResponse("/admin", status_code=303)
    response.set_cookie(
        auth.SESSION_COOKIE,
        auth.make_session(settings, checked.epoch, checked.fingerprint),
        **auth.cookie_options(settings),
    )
    return response


@protected.post("/logout", include_in_schema=False)
async def logout(request: Request) -> Response:
    """Sign out: the cookie goes and every session cookie issued so far stops working."""
    await form_of(request)
    with session_scope(settings_of(request).database_url) as db:
        auth.end_all_sessions(db)
    response = RedirectResponse("/admin/login", status_code=303)
    response.delete_cookie(
        auth.SESSION_COOKIE, path="/", secure=settings_of(request).public_is_https, httponly=True
    )
    return response
