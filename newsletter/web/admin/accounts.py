"""Accounts: /admin/account (your own: password, two-factor, recovery codes, sign out
everywhere) and /admin/accounts (the owner's: invite or invite again, change a role, remove,
sign someone out everywhere). A refused change gets a page saying what to do."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from newsletter.core.config import Settings
from newsletter.services import accounts, accounts_links, accounts_totp, auth
from newsletter.store import accounts as account_store
from newsletter.store.db import session_scope
from newsletter.web.admin.common import (
    Db,
    form_of,
    page,
    redirect,
    require_admin,
    require_owner,
    set_flash,
    settings_of,
    who_of,
)
from newsletter.web.admin.login import signed_in_response, wait_text
from newsletter.web.security import client_ip

protected = APIRouter(prefix="/admin", dependencies=[Depends(require_admin)])
owner = APIRouter(prefix="/admin", dependencies=[Depends(require_owner)])
AccountId = Annotated[int, Path(ge=1, le=2**31 - 1)]


def refused(request: Request, title: str, text: str, back: str, status: int = 409) -> Response:
    """A refused account change: what happened, what to do, and the way back."""
    context = {"title": title, "text": text, "back": back}
    return page(request, "admin/account_refused.html", context, status)


def _own_page(
    request: Request,
    db: Db,
    error: str | None = None,
    status: int = 200,
    signed: str = "",
    password_error: str | None = None,
) -> Response:
    person = who_of(request)
    context: dict[str, object] = {
        "nav": "account",
        "person": person,
        "error": error,
        "password_error": password_error,
        "min_length": auth.MIN_PASSWORD_LENGTH,
    }
    if not person.operator:
        account = account_store.by_id(db, person.account)
        assert account is not None  # require_admin found it
        context["codes_left"] = accounts_totp.recovery_codes_left(account)
        if account.totp_secret is None:
            settings = settings_of(request)
            again = accounts_totp.enrolment_secret(settings, account, signed) if signed else None
            context["enrol"] = accounts_totp.enrolment(settings, account, settings.practice, again)
    return page(request, "admin/account.html", context, status)


@protected.get("/account", include_in_schema=False)
def own_account(request: Request, db: Db) -> Response:
    return _own_page(request, db)


def _turn_on(settings: Settings, account_id: int, signed: str, code: str) -> list[str] | str:
    with session_scope(settings.database_url) as session:
        account = account_store.by_id(session, account_id)
        if account is None:
            return "that account no longer exists"
        secret = accounts_totp.enrolment_secret(settings, account, signed)
        if secret is None:
            return "The page was open too long: scan this new code, then type the code it shows."
        try:
            return accounts_totp.turn_on(settings, account, secret, code, auth.clock())
        except ValueError:
            return (
                "That code isn't right: type the six digits your app shows now for this site "
                "(they change every 30 seconds)."
            )


@protected.post("/account/two-factor", include_in_schema=False)
async def two_factor_on(request: Request) -> Response:
    form = await form_of(request)
    person = who_of(request)
    if person.operator:
        return redirect(request, "/admin/account", "The server's admin password has no account.")
    signed, code = str(form.get("enrol") or "")[:2000], str(form.get("code") or "")[:100]
    done = await run_in_threadpool(_turn_on, settings_of(request), person.account, signed, code)
    with session_scope(settings_of(request).database_url) as db:
        if isinstance(done, str):
            return _own_page(request, db, done, 400, signed)
    context = {"nav": "account", "codes": done}
    return page(request, "admin/recovery_codes.html", context)


@protected.post("/account/password", include_in_schema=False)
async def change_password(request: Request) -> Response:
    """A new password for your own account, the current one required: every other session of
    the account ends, this one goes on (its cookie is issued again at the new generation). A
    wrong current password counts against the connection as a wrong sign-in does."""
    settings = settings_of(request)
    form = await form_of(request)
    person = who_of(request)
    if person.operator:
        return refused(
            request,
            "The server's admin password has no account",
            "Whoever runs the server changes it with `newsletter admin set-password`. To have "
            "a password of your own here, invite yourself under Accounts.",
            "/admin/account",
        )
    ip = client_ip(request)
    wait = await run_in_threadpool(auth.login_blocked, settings, ip)
    if wait:
        return refused(
            request,
            "Too many wrong passwords",
            f"Your connection typed too many wrong passwords. Try again in {wait_text(wait)}.",
            "/admin/account",
            429,
        )
    current = str(form.get("current_password") or "")[:1000]
    new = str(form.get("password") or "")[:1001]
    try:
        generation = await accounts.change_password(settings, person.account, current, new)
    except accounts.WrongPassword as exc:
        await run_in_threadpool(auth.record_failure, settings, ip)
        error = f"Nothing changed: {exc}. Type the password you sign in with now, then the new one."
        with session_scope(settings.database_url) as db:
            return _own_page(request, db, password_error=error, status=400)
    except accounts.AccountError as exc:
        error = f"Nothing changed: {exc}. Choose a longer one."
        with session_scope(settings.database_url) as db:
            return _own_page(request, db, password_error=error, status=400)
    epoch = await run_in_threadpool(_epoch, settings)
    response = signed_in_response(settings, "/admin/account", epoch, "", person.account, generation)
    saved = "Your new password is saved. You are signed out on your other computers and phones."
    set_flash(request, response, saved)
    return response


def _epoch(settings: Settings) -> str:
    with session_scope(settings.database_url) as session:
        return auth.session_epoch(session)


@protected.post("/account/recovery-codes", include_in_schema=False)
async def new_codes(request: Request) -> Response:
    await form_of(request)
    person = who_of(request)
    with session_scope(settings_of(request).database_url) as db:
        account = account_store.by_id(db, person.account)
        if account is None or account.totp_secret is None:
            return redirect(request, "/admin/account", "Turn two-factor sign-in on first.", "error")
        codes = accounts_totp.new_recovery_codes(account)
    return page(request, "admin/recovery_codes.html", {"nav": "account", "codes": codes})


@protected.post("/account/sign-out-everywhere", include_in_schema=False)
async def sign_out_everywhere(request: Request) -> Response:
    """End this account's sessions on every device (this one too); the operator ends all."""
    await form_of(request)
    person = who_of(request)
    with session_scope(settings_of(request).database_url) as db:
        accounts.end_sessions(db, person)
    return redirect(request, "/admin/login", "You are signed out on every device.")


# --- the owner's accounts page ---------------------------------------------------------------


@owner.get("/accounts", include_in_schema=False)
def accounts_page(request: Request, db: Db) -> Response:
    context = {"nav": "accounts", "people": accounts.listing(db), "roles": accounts.ROLE_NAMES}
    return page(request, "admin/accounts.html", context)


def _invite(settings: Settings, inviter: str, email: str, name: str, role: str) -> bool:
    with session_scope(settings.database_url) as session:
        account = accounts.create(session, email, name, role)
        session.flush()
        return accounts_links.send_link(settings, accounts_links.INVITE, account, inviter)


@owner.post("/accounts/invite", include_in_schema=False)
async def invite(request: Request) -> Response:
    form = await form_of(request)
    person = who_of(request)
    email, name = str(form.get("email") or "")[:254], str(form.get("name") or "")[:200]
    role = str(form.get("role") or accounts.ASSISTANT)
    try:
        sent = await run_in_threadpool(
            _invite, settings_of(request), person.name, email, name, role
        )
    except accounts.AccountError as exc:
        return redirect(request, "/admin/accounts", f"Nobody invited: {exc}.", "error")
    if not sent:
        return redirect(
            request,
            "/admin/accounts",
            "The account is made but the invitation couldn't be sent: check the mail "
            "provider, then remove the account and invite again.",
            "error",
        )
    return redirect(
        request, "/admin/accounts", f"Invitation sent to {email.strip()} (valid 30 minutes)."
    )


@owner.post("/accounts/{account_id}/remove", include_in_schema=False)
async def remove(request: Request, account_id: AccountId) -> Response:
    await form_of(request)
    person = who_of(request)
    try:
        with session_scope(settings_of(request).database_url) as db:
            name = accounts.remove(db, person, account_id)
    except accounts.LastOwner:
        return _last_owner(request)
    except accounts.AccountError as exc:
        return redirect(request, "/admin/accounts", f"Not removed: {exc}.", "error")
    return redirect(request, "/admin/accounts", f"{name}'s account is removed.")


@owner.post("/accounts/{account_id}/sign-out", include_in_schema=False)
async def sign_out_someone(request: Request, account_id: AccountId) -> Response:
    await form_of(request)
    with session_scope(settings_of(request).database_url) as db:
        accounts.sign_out_everywhere(db, account_id)
    return redirect(request, "/admin/accounts", "Signed out on every device.")


@owner.post("/accounts/{account_id}/two-factor-off", include_in_schema=False)
async def two_factor_off(request: Request, account_id: AccountId) -> Response:
    """For someone who lost their phone and their recovery codes: they sign in with the
    password alone and turn it on again."""
    await form_of(request)
    with session_scope(settings_of(request).database_url) as db:
        account = account_store.by_id(db, account_id)
        if account is not None:
            accounts_totp.turn_off(account)
            accounts.sign_out_everywhere(db, account_id)
    return redirect(request, "/admin/accounts", "Two-factor sign-in is off for that account.")


@owner.post("/accounts/{account_id}/role", include_in_schema=False)
async def change_role(request: Request, account_id: AccountId) -> Response:
    """Make someone an owner or an assistant; never the last owner an assistant."""
    form = await form_of(request)
    person = who_of(request)
    role = str(form.get("role") or "")[:20]
    try:
        with session_scope(settings_of(request).database_url) as db:
            changed = accounts.change_role(db, account_id, role)
    except accounts.LastOwner:
        return _last_owner(request)
    except accounts.AccountError as exc:
        return refused(
            request,
            "The role didn't change",
            f"{str(exc).capitalize()}. Go back to Accounts and choose Owner or Assistant.",
            "/admin/accounts",
            400,
        )
    done = f"{changed.name} is now {accounts.ROLE_NAMES[changed.role].lower()}."
    if changed.account == person.account and not changed.is_owner:
        return redirect(request, "/admin/account", done)  # Accounts is the owner's page
    return redirect(request, "/admin/accounts", done)


def _last_owner(request: Request) -> Response:
    return refused(
        request,
        "The practice needs an owner",
        "This is the only owner, so it stays one. Make someone else an owner first (invite "
        "them as an owner, or change an assistant's role), then change or remove this one.",
        "/admin/accounts",
    )


def _invite_again(settings: Settings, account_id: int, inviter: str) -> tuple[str, bool]:
    with session_scope(settings.database_url) as session:
        account, sent = accounts_links.send_invitation_again(settings, session, account_id, inviter)
        return account.email, sent


@owner.post("/accounts/{account_id}/invite-again", include_in_schema=False)
async def invite_again(request: Request, account_id: AccountId) -> Response:
    """A new invitation for someone who hasn't chosen a password yet; the older link stops."""
    await form_of(request)
    person = who_of(request)
    settings = settings_of(request)
    try:
        email, sent = await run_in_threadpool(_invite_again, settings, account_id, person.name)
    except accounts_links.NotWaiting:
        return refused(
            request,
            "This invitation was already accepted",
            "They chose a password and can sign in. If they forgot it, they can ask for a reset "
            "link on the sign-in page (“Forgot your password?”).",
            "/admin/accounts",
        )
    except LookupError:
        return refused(
            request,
            "That account no longer exists",
            "Someone removed it. Invite the person again under Accounts.",
            "/admin/accounts",
            404,
        )
    if not sent:
        return refused(
            request,
            "The invitation couldn't be sent",
            "The earlier link has stopped working. Check the mail provider in Settings, then "
            "send the invitation again.",
            "/admin/accounts",
            502,
        )
    return redirect(
        request, "/admin/accounts", f"Invitation sent again to {email} (valid 30 minutes)."
    )
