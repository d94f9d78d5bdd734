"""The accounts table's queries: find, list, count and remove admin accounts."""

from __future__ import annotations

from sqlalchemy import func, select
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
