"""Accounts: /admin/account (your own: two-factor, recovery codes, sign out everywhere) and
/admin/accounts (the owner's: invite, remove, sign someone out everywhere)."""

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
    settings_of,
    who_of,
)

protected = APIRouter(prefix="/admin", dependencies=[Depends(require_admin)])
owner = APIRouter(prefix="/admin", dependencies=[Depends(require_owner)])
AccountId = Annotated[int, Path(ge=1, le=2**31 - 1)]


def _own_page(
    request: Request, db: Db, error: str | None = None, status: int = 200, signed: str = ""
) -> Response:
    person = who_of(request)
    context: dict[str, object] = {"nav": "account", "person": person, "error": error}
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
        if person.operator:
            auth.end_all_sessions(db)
        else:
            accounts.sign_out_everywhere(db, person.account)
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
