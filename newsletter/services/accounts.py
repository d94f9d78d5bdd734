"""Admin accounts: the owner and assistants, what each role may do, passwords and signing in.

The operator (whoever runs the server) keeps a key of their own: NEWSLETTER_ADMIN_PASSWORD or
the `newsletter admin set-password` one signs in with an empty email address as "the server's
admin", with the owner's rights (services/auth.py checks it). Everyone else signs in with an
email address, a password and, once turned on, a two-factor code (services/accounts_totp.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import anyio.to_thread
from sqlalchemy.orm import Session

from newsletter.core import identity
from newsletter.core.config import Settings
from newsletter.services import accounts_totp, auth
from newsletter.store import accounts as store
from newsletter.store.db import session_scope
from newsletter.store.models import Account

OWNER, ASSISTANT = store.OWNER, store.ASSISTANT
ROLE_NAMES = {OWNER: "Owner", ASSISTANT: "Assistant"}
OPERATOR_NAME = "the server's admin"

# What only an owner may do; an assistant writes, previews and schedules (everything else).
OWNER_ONLY = ("export", "erase", "accounts", "mail provider")


class AccountError(ValueError):
    """An account change refused; the message is safe to show."""


class LastOwner(AccountError):
    """Removing or demoting the only owner who can sign in."""


class WrongPassword(AccountError):
    """The current password given to change it isn't right."""


@dataclass(frozen=True)
class Who:
    """The person signed in: `account` 0 is the operator (the owner's rights, no account row)."""

    account: int
    name: str
    email: str
    role: str
    two_factor: bool = False

    @property
    def is_owner(self) -> bool:
        return self.role == OWNER

    @property
    def operator(self) -> bool:
        return self.account == 0


OPERATOR = Who(0, OPERATOR_NAME, "", OWNER)


def who(account: Account) -> Who:
    return Who(
        account.id, account.name, account.email, account.role, account.totp_secret is not None
    )


def clean_email(email: str) -> str:
    try:
        return identity.normalise_email(email)
    except ValueError as exc:
        raise AccountError(f"that isn't one email address ({exc})") from None


def clean_name(name: str) -> str:
    try:
        cleaned = identity.one_line(name.strip(), 200)
    except ValueError as exc:
        raise AccountError(f"the name {exc}") from None
    if not cleaned:
        raise AccountError("please give a name")
    return cleaned


def check_new_password(password: str) -> None:
    if len(password) < auth.MIN_PASSWORD_LENGTH:
        raise AccountError(f"the password needs at least {auth.MIN_PASSWORD_LENGTH} characters")
    if len(password) > 1000:
        raise AccountError("the password is too long (at most 1000 characters)")


def owner_exists(settings: Settings) -> bool:
    with session_scope(settings.database_url) as session:
        return store.owner_exists(session)


def create(
    session: Session, email: str, name: str, role: str, password_hash: str | None = None
) -> Account:
    """A new account (no password yet when invited); AccountError when the address has one."""
    address = clean_email(email)
    if store.by_email(session, address) is not None:
        raise AccountError("there is already an account with that address")
    if role not in ROLE_NAMES:
        raise AccountError("unknown role")
    return store.add(session, address, clean_name(name), role, password_hash)


def set_password(session: Session, account: Account, password_hash: str) -> None:
    """Store a new Argon2 hash (made with auth.hash_password in a thread) and end every
    session of this account: whoever knew the old password is signed out everywhere."""
    account.password_hash = password_hash
    account.generation += 1
    session.flush()


async def hash_new_password(password: str) -> str:
    """Argon2 of a new password, in a worker thread under auth.hash_slots (raises AccountError
    when it is too short or too long)."""
    check_new_password(password)
    return await anyio.to_thread.run_sync(auth.hash_password, password, limiter=auth.hash_slots)


def sign_out_everywhere(session: Session, account_id: int) -> None:
    """Void every session cookie of this account (every browser it is signed in on)."""
    account = store.by_id(session, account_id)
    if account is not None:
        account.generation += 1
        session.flush()


def end_sessions(session: Session, person: Who) -> None:
    """Sign `person` out everywhere: an account's sessions on every device; the operator's
    ends every session cookie issued so far, as before accounts existed."""
    if person.operator:
        auth.end_all_sessions(session)
    else:
        sign_out_everywhere(session, person.account)


def remove(session: Session, by: Who, account_id: int) -> str:
    """Remove an account (its sessions end with it); the removed person's name."""
    account = store.by_id(session, account_id)
    if account is None:
        raise AccountError("that account no longer exists")
    if account.id == by.account:
        raise AccountError("you can't remove your own account")
    _keep_an_owner(session, account)
    name = account.name
    store.remove(session, account)
    return name


def _keep_an_owner(session: Session, account: Account) -> None:
    """Refuse to take away the last owner who can sign in: with none, nobody could manage
    accounts, export or erase, and the admin would ask for the first-run setup link again."""
    if account.role != OWNER or account.password_hash is None:
        return
    if len(store.owners_locked(session)) <= 1:
        raise LastOwner("the practice needs an owner: this is the only one")


def change_role(session: Session, account_id: int, role: str) -> Who:
    """Make an account an owner or an assistant; LastOwner when it is the only owner."""
    if role not in ROLE_NAMES:
        raise AccountError("unknown role")
    account = store.by_id(session, account_id)
    if account is None:
        raise AccountError("that account no longer exists")
    if account.role != role:
        if role != OWNER:
            _keep_an_owner(session, account)
        account.role = role
        session.flush()
    return who(account)


def listing(session: Session) -> list[tuple[Who, bool]]:
    """Every account and whether it has accepted its invitation (has a password)."""
    return [(who(a), a.password_hash is not None) for a in store.all_accounts(session)]


# --- changing your own password ------------------------------------------------------------


def _hash_now(settings: Settings, account_id: int) -> str | None:
    with session_scope(settings.database_url) as session:
        account = store.by_id(session, account_id)
        return None if account is None else account.password_hash


def _save_new_password(settings: Settings, account_id: int, checked: str, hashed: str) -> int:
    with session_scope(settings.database_url) as session:
        account = store.by_id(session, account_id)
        if account is None or account.password_hash != checked:  # changed meanwhile
            raise WrongPassword("your password changed meanwhile: sign in again")
        set_password(session, account, hashed)
        return account.generation


async def change_password(settings: Settings, account_id: int, current: str, new: str) -> int:
    """Check the current password, store the new one and end the account's sessions; the new
    generation, so the caller can keep the session it was asked from. WrongPassword when the
    current one isn't right, AccountError when the new one is too short or too long."""
    check_new_password(new)
    checked = await anyio.to_thread.run_sync(_hash_now, settings, account_id)
    matches = await anyio.to_thread.run_sync(
        auth.hash_matches, checked or auth.dummy_hash(), current, limiter=auth.hash_slots
    )
    if checked is None or not matches:
        raise WrongPassword("that isn't your current password")
    hashed = await hash_new_password(new)
    return await anyio.to_thread.run_sync(_save_new_password, settings, account_id, checked, hashed)


def current(settings: Settings, account_id: int, generation: int) -> Who | None:
    """The account a session cookie names, when it still exists at that generation."""
    with session_scope(settings.database_url) as session:
        account = store.by_id(session, account_id)
        if account is None or account.generation != generation or account.password_hash is None:
            return None
        return who(account)


# --- signing in ----------------------------------------------------------------------------


@dataclass(frozen=True)
class LoginCheck:
    """What one account sign-in attempt learned (see auth.PasswordCheck for the operator's)."""

    ok: bool
    account: int = 0
    generation: int = 0
    epoch: str = "0"
    two_factor: bool = False


def _check_login_now(settings: Settings, email: str, password: str) -> LoginCheck:
    try:
        address = identity.normalise_email(email)
    except ValueError:
        address = ""
    with session_scope(settings.database_url) as session:
        account = store.by_email(session, address) if address else None
        hashed = account.password_hash if account is not None else None
        # an unknown address (or an invitation not yet accepted) costs one Argon2 check too
        matches = auth.hash_matches(hashed or auth.dummy_hash(), password)
        if account is None or hashed is None or not matches:
            return LoginCheck(False)
        return LoginCheck(
            True,
            account.id,
            account.generation,
            auth.session_epoch(session),
            account.totp_secret is not None,
        )


async def check_login(settings: Settings, email: str, password: str) -> LoginCheck:
    """An account's password check, in a worker thread under auth.hash_slots (as the
    operator's): at most auth.HASH_SLOTS Argon2 checks at once, whoever signs in."""
    return await anyio.to_thread.run_sync(
        _check_login_now, settings, email, password, limiter=auth.hash_slots
    )


def check_code(
    settings: Settings, account_id: int, generation: int, code: str, now: float
) -> tuple[str, str]:
    """The second step of signing in: (accounts_totp's OK, REUSED or WRONG, the session epoch).

    The TOTP step or recovery code the check used up is saved by compare-and-set
    (store.spend_second_factor): two sign-ins with one code at the same moment can't both pass;
    the later one is told the code was used."""
    with session_scope(settings.database_url) as session:
        account = store.by_id(session, account_id)
        if account is None or account.generation != generation or account.totp_secret is None:
            return accounts_totp.WRONG, "0"
        read = store.SecondFactor.of(account)
        result = accounts_totp.check_second_factor(settings, account, code, now)
        spent = store.SecondFactor.of(account)
        session.expire(account)  # the check changed the object: the compare-and-set writes it
        if result == accounts_totp.OK and not store.spend_second_factor(
            session, account_id, read, spent
        ):
            result = accounts_totp.REUSED
        return result, auth.session_epoch(session)
