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

from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from newsletter.store.models import CLAIMED, FAILED, SENT, ExtraSend

AGAIN, CORRECTION = "again", "correction"  # the kinds
HANDED = "handed"
EXTRA_KINDS = (AGAIN, CORRECTION)


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
    added: list[int] = []
    for start in range(0, len(values), 500):
        statement = (
            insert(ExtraSend)
            .values(values[start : start + 500])
            .on_conflict_do_nothing(index_elements=["request_key"])
            .returning(ExtraSend.id)
        )
        added.extend(session.scalars(statement))
    return sorted(added)


def hand_over_extra(session: Session, extra_id: int, now: dt.datetime) -> bool:
    """claimed -> handed by compare-and-set; True for the one caller that flipped it."""
    done = session.execute(
        update(ExtraSend)
        .where(ExtraSend.id == extra_id, ExtraSend.status == CLAIMED)
        .values(status=HANDED, updated_at=now)
    )
    return bool(getattr(done, "rowcount", 0))


def record_extra(
    session: Session,
    extra_id: int,
    sent: bool,
    now: dt.datetime,
    *,
    message_id: str | None = None,
    error: str | None = None,
) -> None:
    """handed -> sent (with the provider's id) or failed (with the reason)."""
    values: dict[str, object] = {"status": SENT if sent else FAILED, "updated_at": now}
    if sent:
        values.update(sent_at=now, provider_message_id=message_id)
    else:
        values["last_error"] = (error or "")[:500]
    session.execute(
        update(ExtraSend).where(ExtraSend.id == extra_id, ExtraSend.status == HANDED).values(values)
    )


def give_up(session: Session, ids: list[int], now: dt.datetime, reason: str) -> None:
    """claimed or handed -> failed when nothing was sent (sending stopped, the provider asked
    to wait): an extra send is a hand-made click, so it is not retried behind her back; the
    page says it did not go, and she can click again."""
    if ids:
        session.execute(
            update(ExtraSend)
            .where(ExtraSend.id.in_(ids), ExtraSend.status.in_((CLAIMED, HANDED)))
            .values(status=FAILED, updated_at=now, last_error=reason[:500])
        )


def extras_by_id(session: Session, ids: list[int]) -> list[Extra]:
    rows = session.scalars(select(ExtraSend).where(ExtraSend.id.in_(ids)).order_by(ExtraSend.id))
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
