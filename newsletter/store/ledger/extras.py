"""Extra sends: a part sent again to one reader, a correction to those who had it (extra_sends).

The ledger's second table, beside `deliveries`: `deliveries` holds each reader's progress (one
row per subscriber, series and part, the enrollment moves with it); an extra send is never
progress, so it lives here, and nothing that moves enrollments reads it. Its states:
- claimed  : written (its `request_key` unique: the form's key, so a double submit is one row);
- handed   : compare-and-set, committed before the provider is called (only one process sends);
- sent / failed : the provider's answer; failed too when nothing went (sending stopped, the
  provider asked to wait): a hand-made click is not retried behind her back.
A row left handed by a crash or an unknown answer stays so (shown as "handed" on the person's
page): it is never sent twice.
No module outside store/ledger/ writes `extra_sends` (tests/store/test_ledger_extras.py).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from newsletter.store.ledger.dialect import among
from newsletter.store.models import ACTIVE, CLAIMED, FAILED, SENT, ExtraSend, Subscriber

AGAIN, CORRECTION = "again", "correction"  # the kinds
HANDED = "handed"
EXTRA_KINDS = (AGAIN, CORRECTION)
_TABLE: Any = ExtraSend.__table__  # Core statements (executemany) skip the ORM's bookkeeping


@dataclass(frozen=True)
class Extra:
    """One extra send as the engine and the person's page read it."""

    id: int
    kind: str
    subscriber_id: int | None
    series_id: int
    part_number: int
    status: str
    created_at: dt.datetime
    sent_at: dt.datetime | None
    last_error: str | None


def _value(row: ExtraSend) -> Extra:
    return Extra(
        row.id,
        row.kind,
        row.subscriber_id,
        row.series_id,
        row.part_number,
        row.status,
        row.created_at,
        row.sent_at,
        row.last_error,
    )


def add_extras(
    session: Session,
    kind: str,
    wanted: list[tuple[str, int, int, int]],
    now: dt.datetime,
) -> list[int]:
    """Claim one extra send per (request key, subscriber, series, part); a key already there
    (the same form posted twice) adds nothing. Returns the ids of the rows this call added."""
    if kind not in EXTRA_KINDS:
        raise ValueError(f"unknown extra send kind {kind!r}")
    if not wanted:
        return []
    values = [
        {
            "request_key": key,
            "kind": kind,
            "subscriber_id": sub,
            "series_id": series,
            "part_number": part,
            "status": CLAIMED,
            "created_at": now,
            "updated_at": now,
        }
        for key, sub, series, part in wanted
    ]
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    statement = (
        insert(ExtraSend)
        .on_conflict_do_nothing(index_elements=["request_key"])
        .returning(ExtraSend.id)
    )
    added = list(session.scalars(statement, values))  # executemany: one compiled statement
    return sorted(added)


def hand_over_extras(session: Session, ids: list[int], now: dt.datetime) -> list[int]:
    """claimed -> handed by one compare-and-set (the caller commits before calling the
    provider): only the call that flips a row sends it. The ids it flipped, in order."""
    if not ids:
        return []
    flipped = session.scalars(
        update(ExtraSend)
        .where(among(session, ExtraSend.id, ids), ExtraSend.status == CLAIMED)
        .values(status=HANDED, updated_at=now)
        .returning(ExtraSend.id)
        .execution_options(synchronize_session=False)
    )
    return sorted(flipped)


@dataclass(frozen=True)
class Target:
    """A handed extra send with what its email needs: the part and the reader (None once erased)."""

    id: int
    kind: str
    series_id: int
    part_number: int
    subscriber_id: int | None
    active: bool
    public_id: str
    email: str
    name: str | None


def targets(session: Session, ids: list[int]) -> list[Target]:
    """These rows with their readers, one statement (a correction's batch reads 1,000)."""
    found = session.execute(
        select(
            ExtraSend.id,
            ExtraSend.kind,
            ExtraSend.series_id,
            ExtraSend.part_number,
            ExtraSend.subscriber_id,
            Subscriber.status,
            Subscriber.public_id,
            Subscriber.email,
            Subscriber.name,
        )
        .outerjoin(Subscriber, Subscriber.id == ExtraSend.subscriber_id)
        .where(among(session, ExtraSend.id, ids))
        .order_by(ExtraSend.id)
    )
    return [
        Target(i, kind, series, part, sub, status == ACTIVE, public or "", email or "", name)
        for i, kind, series, part, sub, status, public, email, name in found
    ]


def record_extras(
    session: Session,
    sent: list[tuple[int, str]],
    failed: list[tuple[int, str]],
    now: dt.datetime,
) -> None:
    """handed -> sent ((id, the provider's message id)) or failed ((id, the reason)); one
    executemany each, compare-and-set on `handed`."""
    handed = _TABLE.c
    if sent:
        session.execute(
            update(_TABLE)
            .where(handed.id == bindparam("i"), handed.status == HANDED)
            .values(status=SENT, updated_at=now, sent_at=now, provider_message_id=bindparam("m")),
            [{"i": i, "m": mid} for i, mid in sent],
        )
    if failed:
        session.execute(
            update(_TABLE)
            .where(handed.id == bindparam("i"), handed.status == HANDED)
            .values(status=FAILED, updated_at=now, last_error=bindparam("e")),
            [{"i": i, "e": (error or "")[:500]} for i, error in failed],
        )


def give_up(session: Session, ids: list[int], now: dt.datetime, reason: str) -> None:
    """claimed or handed -> failed when nothing was sent (sending stopped, the provider asked
    to wait): an extra send is a hand-made click, so it is not retried behind her back; the
    page says it did not go, and she can click again."""
    if ids:
        session.execute(
            update(ExtraSend)
            .where(among(session, ExtraSend.id, ids), ExtraSend.status.in_((CLAIMED, HANDED)))
            .values(status=FAILED, updated_at=now, last_error=reason[:500])
        )


def extras_by_id(session: Session, ids: list[int]) -> list[Extra]:
    rows = session.scalars(
        select(ExtraSend).where(among(session, ExtraSend.id, ids)).order_by(ExtraSend.id)
    )
    return [_value(r) for r in rows]


def extras_by_key_prefix(session: Session, prefix: str) -> list[Extra]:
    """The rows one form made (their keys start with the form's key)."""
    rows = session.scalars(
        select(ExtraSend)
        .where(ExtraSend.request_key.startswith(prefix, autoescape=True))
        .order_by(ExtraSend.id)
    )
    return [_value(r) for r in rows]


def extras_of(session: Session, subscriber_id: int, limit: int = 50) -> list[Extra]:
    """One reader's extra sends, newest first (the person's page)."""
    rows = session.scalars(
        select(ExtraSend)
        .where(ExtraSend.subscriber_id == subscriber_id)
        .order_by(ExtraSend.created_at.desc(), ExtraSend.id.desc())
        .limit(limit)
    )
    return [_value(r) for r in rows]


def forget_person_extras(session: Session, subscriber_id: int) -> None:
    """Erasure: the person's extra sends keep only series, part, kind and status."""
    session.execute(
        update(ExtraSend)
        .where(ExtraSend.subscriber_id == subscriber_id)
        .values(subscriber_id=None, last_error=None, provider_message_id=None)
    )
