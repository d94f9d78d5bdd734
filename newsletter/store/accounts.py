"""The accounts table's queries: find, list, count and remove admin accounts."""

from __future__ import annotations

from typing import NamedTuple

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from newsletter.store.models import Account

OWNER, ASSISTANT = "owner", "assistant"
ROLES = (OWNER, ASSISTANT)


def by_id(session: Session, account_id: int) -> Account | None:
    return session.get(Account, account_id)


def by_email(session: Session, email: str) -> Account | None:
    return session.scalar(select(Account).where(Account.email == email))


def owner_exists(session: Session) -> bool:
    """Whether the first run is over: an owner account with a password exists."""
    found = session.scalar(
        select(func.count())
        .select_from(Account)
        .where(Account.role == OWNER, Account.password_hash.is_not(None))
    )
    return bool(found)


def able_to_sign_in(session: Session) -> dict[str, int]:
    """{role: accounts of that role with a password}: who can sign in (an invitation not yet
    accepted has none)."""
    rows = session.execute(
        select(Account.role, func.count())
        .where(Account.password_hash.is_not(None))
        .group_by(Account.role)
    )
    return {role: int(n) for role, n in rows}


def owners_locked(session: Session) -> list[Account]:
    """The owners who have accepted (a password set), their rows locked until the transaction
    ends: two owners demoting or removing each other at once can't both pass the last-owner
    check (PostgreSQL waits on the lock; SQLite has one writer at a time)."""
    query = (
        select(Account)
        .where(Account.role == OWNER, Account.password_hash.is_not(None))
        .order_by(Account.id)
        .with_for_update()
    )
    return list(session.scalars(query))


class SecondFactor(NamedTuple):
    """What signing in with a code uses up: the recovery codes' digests (a spent one marked) and
    the last time step a TOTP code signed in at."""

    recovery_codes: str
    totp_last_step: int

    @classmethod
    def of(cls, account: Account) -> SecondFactor:
        return cls(account.recovery_codes, account.totp_last_step)


def spend_second_factor(
    session: Session, account_id: int, read: SecondFactor, spent: SecondFactor
) -> bool:
    """Save `spent` only while the row still holds what was `read` (compare-and-set): of two
    sign-ins with one code at the same moment, the second finds the row changed and saves
    nothing (False). Neither database needs a lock for it: the UPDATE's condition decides."""
    done = session.execute(
        update(Account)
        .where(
            Account.id == account_id,
            Account.recovery_codes == read.recovery_codes,
            Account.totp_last_step == read.totp_last_step,
        )
        .values(recovery_codes=spent.recovery_codes, totp_last_step=spent.totp_last_step)
        .execution_options(synchronize_session=False)
    )
    return bool(done.rowcount == 1)  # type: ignore[attr-defined]


def first_owner(session: Session) -> Account | None:
    return session.scalar(
        select(Account).where(Account.role == OWNER).order_by(Account.id).limit(1)
    )


def all_accounts(session: Session) -> list[Account]:
    return list(session.scalars(select(Account).order_by(Account.role.desc(), Account.id)))


def add(session: Session, email: str, name: str, role: str, password_hash: str | None) -> Account:
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}")
    account = Account(
        email=email,
        name=name,
        role=role,
        password_hash=password_hash,
        totp_secret=None,
        totp_last_step=0,
        recovery_codes="",
        generation=0,
    )
    session.add(account)
    session.flush()
    return account


def remove(session: Session, account: Account) -> None:
    session.delete(account)
    session.flush()
