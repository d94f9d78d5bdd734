"""Pages reached by a link instead of a password: first-run setup, an invitation, a password reset.

/admin/setup/<token> creates the owner (then Settings, signed in); /admin/invite/<token> lets an
invited person choose a password; /admin/reset asks for an address and /admin/reset/<token>
sets a new password. A used, expired or unknown link gets a page saying what to do instead.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from newsletter.core.config import Settings
from newsletter.services import accounts, accounts_links, auth
from newsletter.store import accounts as account_store
from newsletter.store.db import session_scope
from newsletter.web.admin.common import form_of, page, redirect, settings_of
from newsletter.web.admin.login import signed_in_response
from newsletter.web.security import client_ip

public = APIRouter(prefix="/admin")
Token = Annotated[str, Path(min_length=8, max_length=400, pattern=r"^[A-Za-z0-9._:-]+$")]

L = accounts_links
SETUP_AGAIN = "Ask whoever runs the server for a new one: `newsletter admin setup-link` prints it."
PROBLEMS: dict[tuple[str, str], tuple[str, str, str, str]] = {
    # (link, state) -> title, what to do, button, where
    ("setup", L.USED): (
        "This admin is already set up",
        "The setup link worked once and the owner's account exists. Sign in with it.",
        "Sign in",
        "/admin/login",
    ),
    ("setup", L.EXPIRED): (
        "This setup link has expired",
        f"Setup links work for {L.SETUP_HOURS} hours. {SETUP_AGAIN}",
        "",
        "",
    ),
    ("setup", L.INVALID): (
        "This setup link doesn't work",
        f"It may be incomplete, or a newer link replaced it. {SETUP_AGAIN}",
        "",
        "",
    ),
    ("invite", L.USED): (
        "This invitation was already used",
        "Your password is set: sign in with it. If you forgot it, ask for a reset link.",
        "Sign in",
        "/admin/login",
    ),
    ("invite", L.EXPIRED): (
        "This invitation has expired",
        "Invitations work for 30 minutes. Ask the owner to invite you again.",
        "",
        "",
    ),
    ("invite", L.REPLACED): (
        "A newer invitation replaced this one",
        "The owner sent you the invitation again: open the link in the newest email from them.",
        "",
        "",
    ),
    ("invite", L.INVALID): (
        "This invitation doesn't work",
        "It may be incomplete or withdrawn. Ask the owner to invite you again.",
        "",
        "",
    ),
    ("reset", L.USED): (
        "This reset link was already used",
        "Each reset link works once. If you still can't sign in, ask for a new link.",
        "Ask for a new link",
        "/admin/reset",
    ),
    ("reset", L.EXPIRED): (
        "This reset link has expired",
        "Reset links work for 30 minutes. Ask for a new one.",
        "Ask for a new link",
        "/admin/reset",
    ),
    ("reset", L.INVALID): (
        "This reset link doesn't work",
        "It may be incomplete. Ask for a new one.",
        "Ask for a new link",
        "/admin/reset",
    ),
}


def _problem(request: Request, link: str, state: str) -> Response:
    title, text, action, url = PROBLEMS[(link, state)]
    context = {"title": title, "text": text, "action": action, "action_url": url, "state": state}
    return page(request, "admin/link_problem.html", context, 410 if state != L.INVALID else 404)


def _form(
    request: Request, link: str, token: str, error: str | None = None, **extra: Any
) -> Response:
    words = {
        "setup": (
            "Welcome — set up your admin",
            "Create the owner's account: you.",
            "Create my account",
        ),
        "invite": (
            "Choose your password",
            "You were invited to help with the newsletter.",
            "Save and sign in",
        ),
        "reset": (
            "Choose a new password",
            "Your other sessions end when it is saved.",
            "Save the new password",
        ),
    }[link]
    context = {
        "heading": words[0],
        "intro": words[1],
        "button": words[2],
        "action": f"/admin/{link}/{token}",
        "ask_identity": link == "setup",
        "min_length": auth.MIN_PASSWORD_LENGTH,
        "error": error,
        **extra,
    }
    return page(request, "admin/setup.html", context, 400 if error else 200)


# --- first run -------------------------------------------------------------------------------


def _setup_state(settings: Settings, token: str) -> str:
    with session_scope(settings.database_url) as session:
        return L.setup_state(session, token)


@public.get("/setup/{token}", include_in_schema=False)
def setup_page(request: Request, token: Token) -> Response:
    state = _setup_state(settings_of(request), token)
    return _form(request, "setup", token) if state == L.FINE else _problem(request, "setup", state)


def _make_owner(
    settings: Settings, token: str, name: str, email: str, hashed: str
) -> tuple[str, int]:
    """(the link's state, the new owner's id): the state is checked again in the transaction."""
    with session_scope(settings.database_url) as session:
        state = L.setup_state(session, token)
        if state != L.FINE:
            return state, 0
        owner = accounts.create(session, email, name, accounts.OWNER, hashed)
        L.spend_setup_link(session)
        return L.FINE, owner.id


@public.post("/setup/{token}", include_in_schema=False)
async def setup(request: Request, token: Token) -> Response:
    settings = settings_of(request)
    form = await form_of(request)
    state = await run_in_threadpool(_setup_state, settings, token)
    if state != L.FINE:
        return _problem(request, "setup", state)
    name, email = str(form.get("name") or "")[:200], str(form.get("email") or "")[:254]
    try:
        accounts.clean_name(name)
        accounts.clean_email(email)
        hashed = await accounts.hash_new_password(str(form.get("password") or ""))
        state, owner = await run_in_threadpool(_make_owner, settings, token, name, email, hashed)
    except accounts.AccountError as exc:
        return _form(request, "setup", token, str(exc), name=name, email=email)
    if state != L.FINE:
        return _problem(request, "setup", state)
    epoch = await run_in_threadpool(_epoch, settings)
    response = signed_in_response(settings, "/admin/settings", epoch, "", owner, 0)
    return response


def _epoch(settings: Settings) -> str:
    with session_scope(settings.database_url) as session:
        return auth.session_epoch(session)


# --- invitations and resets ------------------------------------------------------------------


def _link_state(settings: Settings, link: str, token: str) -> str:
    with session_scope(settings.database_url) as session:
        return L.open_link(settings, session, link, token).state


def _set_password(settings: Settings, link: str, token: str, hashed: str) -> str:
    with session_scope(settings.database_url) as session:
        opened = L.open_link(settings, session, link, token)
        if opened.account is None:
            return opened.state
        accounts.set_password(session, opened.account, hashed)
        return L.FINE


async def _password_from_link(request: Request, link: str, token: str) -> Response:
    settings = settings_of(request)
    form = await form_of(request)
    state = await run_in_threadpool(_link_state, settings, link, token)
    if state != L.FINE:
        return _problem(request, link, state)
    try:
        hashed = await accounts.hash_new_password(str(form.get("password") or ""))
    except accounts.AccountError as exc:
        return _form(request, link, token, str(exc))
    state = await run_in_threadpool(_set_password, settings, link, token, hashed)
    if state != L.FINE:
        return _problem(request, link, state)
    return redirect(request, "/admin/login", "Your password is saved. Sign in with it now.")


@public.get("/invite/{token}", include_in_schema=False)
def invite_page(request: Request, token: Token) -> Response:
    state = _link_state(settings_of(request), "invite", token)
    return (
        _form(request, "invite", token) if state == L.FINE else _problem(request, "invite", state)
    )


@public.post("/invite/{token}", include_in_schema=False)
async def invite(request: Request, token: Token) -> Response:
    return await _password_from_link(request, "invite", token)


@public.get("/reset/{token}", include_in_schema=False)
def reset_page(request: Request, token: Token) -> Response:
    state = _link_state(settings_of(request), "reset", token)
    return _form(request, "reset", token) if state == L.FINE else _problem(request, "reset", state)


@public.post("/reset/{token}", include_in_schema=False)
async def reset(request: Request, token: Token) -> Response:
    return await _password_from_link(request, "reset", token)


@public.get("/reset", include_in_schema=False)
def reset_request_page(request: Request) -> Response:
    return page(request, "admin/reset_request.html", {"sent": False})


def _send_reset(settings: Settings, email: str) -> None:
    try:
        address = accounts.clean_email(email)
    except accounts.AccountError:
        return
    with session_scope(settings.database_url) as session:
        account = account_store.by_email(session, address)
        if account is not None and account.password_hash is not None:
            L.send_link(settings, L.RESET, account)


@public.post("/reset", include_in_schema=False)
async def reset_request(request: Request) -> Response:
    """The same answer whether or not the address has an account (no one learns who does);
    each request counts as a failed sign-in for the connection, so it can't be used to flood
    an inbox."""
    settings = settings_of(request)
    form = await form_of(request)
    ip = client_ip(request)
    wait = await run_in_threadpool(auth.login_blocked, settings, ip)
    if not wait:
        await run_in_threadpool(auth.record_failure, settings, ip)
        await run_in_threadpool(_send_reset, settings, str(form.get("email") or "")[:254])
    return page(request, "admin/reset_request.html", {"sent": True, "wait": wait})
