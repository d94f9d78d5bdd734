"""What every admin page shares: the sign-in check, the database session, CSRF-checked forms, flash messages."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Path, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from itsdangerous import BadSignature, URLSafeSerializer

from newsletter.core.config import Settings
from newsletter.services import accounts, auth
from newsletter.store.db import Session, session_scope
from newsletter.web import forms
from newsletter.web.csrf import verify_csrf
from newsletter.web.pages import render as render_page
from newsletter.web.pages import settings_of

FLASH_COOKIE = "nl_flash"


class NotLoggedIn(HTTPException):
    def __init__(self) -> None:
        super().__init__(303, "please sign in", {"Location": "/admin/login"})


class OwnerOnly(HTTPException):
    """An assistant asked for an owner's page (export, erase, accounts, the mail provider)."""

    def __init__(self) -> None:
        super().__init__(403, "only the owner can do this")


def current_session(request: Request) -> auth.AdminSession | None:
    """The valid session the request's cookie holds: the operator's (their password source
    unchanged) or an account's (still there, at its generation), of the current epoch."""
    settings = settings_of(request)
    value = request.cookies.get(auth.SESSION_COOKIE)
    if not value:
        return None
    with session_scope(settings.database_url) as db:
        epoch = auth.session_epoch(db)
        fingerprint = auth.password_fingerprint(settings, db)
    found = auth.read_session(settings, value, epoch, fingerprint=fingerprint)
    if found is None or not found.account:
        request.state.who = accounts.OPERATOR if found else None
        return found
    person = accounts.current(settings, found.account, found.generation)
    request.state.who = person
    return None if person is None else dataclasses.replace(found, role=person.role)


def require_admin(request: Request) -> auth.AdminSession:
    """The signed-in admin's session; otherwise a redirect to the login page."""
    session = current_session(request)
    if session is None:
        raise NotLoggedIn()
    return session


def require_owner(request: Request) -> auth.AdminSession:
    """The signed-in owner's (or operator's) session; an assistant gets the 403 page
    (OwnerOnly), someone signed out the login page. Add it to an owner-only route as
    `dependencies=[Depends(require_owner)]`."""
    session = require_admin(request)
    if session.role != accounts.OWNER:
        raise OwnerOnly()
    return session


def who_of(request: Request) -> accounts.Who:
    """The person signed in (after require_admin ran for this request)."""
    person = getattr(request.state, "who", None)
    if person is None:
        raise NotLoggedIn()
    return person


def owner_only_page(request: Request, exc: Exception) -> Response:
    """The 403 page an assistant sees on an owner's page: what happened and what to do."""
    context = {"what": accounts.OWNER_ONLY}
    return page(request, "admin/owner_only.html", context, 403)


def get_db(request: Request) -> Iterator[Session]:
    with session_scope(settings_of(request).database_url) as session:
        yield session


Db = Annotated[Session, Depends(get_db)]
SubscriberId = Annotated[int, Path(ge=1, le=2**31 - 1)]
PartNumber = Annotated[int, Path(ge=1, le=10_000)]


async def form_of(request: Request) -> Any:
    """The submitted form after its CSRF token checks out (CSRFError -> a 400 page), its text
    with a browser's line breaks read as LF (web/forms.py)."""
    form = await request.form()
    verify_csrf(request, form.get("csrf_token"))
    return forms.normalised(form)


# --- presentation helpers ------------------------------------------------------------------


# The date filters (day, local, clock) are registered in web/pages.py, from web/dates.py.


def _flash_serializer(settings: Settings) -> URLSafeSerializer:
    return URLSafeSerializer(settings.secret, salt="newsletter.admin-flash")


def redirect(request: Request, url: str, message: str | None = None, kind: str = "ok") -> Response:
    """303 to `url`, carrying a one-time message in a signed cookie (never in the URL)."""
    response = RedirectResponse(url, status_code=303)
    if message:
        set_flash(request, response, message, kind)
    return response


def set_flash(request: Request, response: Response, message: str, kind: str = "ok") -> None:
    """Carry a one-time message to the next page in a signed cookie (never in the URL)."""
    value = _flash_serializer(settings_of(request)).dumps({"m": message[:600], "k": kind})
    response.set_cookie(FLASH_COOKIE, value, **auth.cookie_options(settings_of(request), 120))


def page(request: Request, name: str, context: dict[str, Any], status: int = 200) -> HTMLResponse:
    """An admin page: no caching, the one-time message shown and cleared."""
    settings = settings_of(request)
    flash = None
    raw = request.cookies.get(FLASH_COOKIE)
    if raw:
        try:
            flash = _flash_serializer(settings).loads(raw)
        except BadSignature:
            flash = None
    who = getattr(request.state, "who", None)
    context = {
        "flash": flash,
        "zone": settings.default_timezone,
        "nav": "",
        "who": who,
        "mail_backend": settings.mail_backend,  # the nav names the kept-mail page by it
        **context,
    }
    response = render_page(request, name, context, status, no_store=True)
    if raw:
        response.delete_cookie(FLASH_COOKIE, path="/")
    return response
