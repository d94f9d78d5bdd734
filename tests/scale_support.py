"""Helpers for the tests at scale: many readers and ledger rows for the admin pages (issue 15),
a full batch of readers due at one slot for the engine's plan, send and ledger, and counting
the SQL statements a page or a step runs (counts, never time). Signing in: web_helpers."""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from engine_support import ship, utc
from fastapi.testclient import TestClient
from sqlalchemy import event, func, insert, select

from newsletter.core.config import Settings
from newsletter.engine import enrollment
from newsletter.engine.plan import Chunk
from newsletter.engine.plan import plan as plan_due
from newsletter.queue.dueset import RedisQueue
from newsletter.store.db import get_engine, session_scope
from newsletter.store.models import (
    ACTIVE,
    BOUNCED,
    FAILED,
    PENDING,
    RETRY,
    SENT,
    UNSUBSCRIBED,
    Delivery,
    Part,
    ProviderEvent,
    Series,
    Subscriber,
)

ZONES = ("Europe/London", "America/New_York", "Asia/Tokyo", "Australia/Sydney")


def add_readers(settings: Settings, now: dt.datetime, count: int, start: int = 0) -> list[int]:
    """`count` readers (mostly active, some pending/unsubscribed/bounced, some paused, some
    choosing particular series only) enrolled in the live series, each sent part 1 of every
    series (a few failed or waiting for a retry) with a bounce event now and then."""
    with session_scope(settings.database_url) as session:
        subs = []
        for i in range(start, start + count):
            status = (
                (PENDING, UNSUBSCRIBED, BOUNCED)[i % 3] if i % 10 == 9 else ACTIVE
            )  # fmt: skip
            email = f"scale{i}-{secrets.token_hex(3)}@example.org"
            subs.append(
                Subscriber(
                    public_id=secrets.token_hex(8),
                    email=email,
                    email_key=email,
                    name=("Okafor " if i % 4 == 0 else "Smith ") + str(i),
                    timezone=ZONES[i % len(ZONES)],
                    status=status,
                    cadence="fortnightly" if i % 5 == 0 else "weekly",
                    paused_until=(now + dt.timedelta(days=20)).date() if i % 11 == 3 else None,
                    takes_new_series=i % 6 != 0,
                    consent_method="import",
                    consent_at=now,
                    confirmed_at=now,
                    created_at=now - dt.timedelta(minutes=i),
                    updated_at=now,
                )
            )
        session.add_all(subs)
        session.flush()
        ids = [s.id for s in subs]
        enrollment.enroll_new(session, ids, now)
        series = list(session.scalars(select(Series)))
        for s in subs:
            for sr in series:
                r = s.id % 20
                status = FAILED if r == 0 else RETRY if r == 1 else SENT
                d = Delivery(
                    subscriber_id=s.id,
                    series_id=sr.id,
                    part_number=1,
                    status=status,
                    scheduled_for=now - dt.timedelta(days=2),
                    sent_at=now - dt.timedelta(days=2) if status == SENT else None,
                    attempts=1,
                    last_error=None if status == SENT else "mailbox full",
                    created_at=now - dt.timedelta(days=2),
                    updated_at=now - dt.timedelta(days=2),
                )
                session.add(d)
                if r == 2:
                    session.flush()
                    session.add(
                        ProviderEvent(
                            provider="sendgrid",
                            event_id=secrets.token_hex(8),
                            event_type="bounce",
                            delivery_id=d.id,
                            subscriber_id=s.id,
                            occurred_at=now - dt.timedelta(days=1),
                            received_at=now - dt.timedelta(days=1),
                            detail="550 no such user",
                        )
                    )
        assert session.scalar(select(Part.id).limit(1)) is not None
        return ids


class Statements:
    """The SQL statements run while counting (text only)."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def __len__(self) -> int:
        return len(self.seen)


@contextmanager
def statements(settings: Settings) -> Iterator[Statements]:
    counted = Statements()
    engine = get_engine(settings.database_url)

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        counted.seen.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        yield counted
    finally:
        event.remove(engine, "before_cursor_execute", count)


def page_statements(settings: Settings, c: TestClient, method: str, path: str, **kw: Any) -> int:
    """How many SQL statements one request ran (the page must answer 200)."""
    with statements(settings) as seen:
        r = c.request(method, path, **kw)
        assert r.status_code == 200, (path, r.status_code)
    return len(seen)


# A full batch: one chunk of NEWSLETTER_BATCH_SIZE's default (SendGrid's cap) through every
# branch of plan, send and the ledger, on SQLite and PostgreSQL (SQLite refused the old conflict
# lookup, an OR of 1,000 ANDs), each costing a bounded number of SQL statements whatever the
# number of rows: counted, not timed.
BATCH = 1000
BATCH_MONDAY = utc(2030, 3, 4, 12)
BATCH_SLOT = utc(2030, 3, 5, 9)  # Tuesday 09:00 UTC: part 1 of Myths
STATEMENTS_PER_ROUND = 40  # generous, and independent of BATCH: one per row would be 1,000+


def batch_readers(settings: Settings, n: int = BATCH) -> list[int]:
    """n confirmed readers in UTC, enrolled on BATCH_MONDAY (bulk, as imports do): part 1 due
    at BATCH_SLOT."""
    ship(settings, BATCH_MONDAY)
    with session_scope(settings.database_url) as session:
        emails = [f"r{i:04d}.{secrets.token_hex(2)}@example.org" for i in range(n)]
        session.execute(
            insert(Subscriber),
            [
                {
                    "public_id": secrets.token_hex(8),
                    "email": e,
                    "email_key": e,
                    "name": None,
                    "timezone": "UTC",
                    "status": ACTIVE,
                    "cadence": "weekly",
                    "takes_new_series": True,
                    "consent_method": "cli",
                    "consent_at": BATCH_MONDAY,
                    "confirmed_at": BATCH_MONDAY,
                    "created_at": BATCH_MONDAY,
                    "updated_at": BATCH_MONDAY,
                }
                for e in emails
            ],
        )
        ids = list(session.scalars(select(Subscriber.id)))
        enrollment.enroll_new(session, ids, BATCH_MONDAY)
    with session_scope(settings.database_url) as session:
        RedisQueue(settings).rebuild(session)
    return ids


def delivery_statuses(settings: Settings) -> dict[str, int]:
    """The ledger's rows counted by status."""
    with session_scope(settings.database_url) as session:
        return dict(
            session.execute(select(Delivery.status, func.count()).group_by(Delivery.status)).all()
        )


def one_full_chunk(settings: Settings, now: dt.datetime = BATCH_SLOT) -> Chunk:
    """Plan at `now`: the whole batch claimed, as one chunk."""
    result = plan_due(settings, now)
    assert result.claimed == BATCH and len(result.chunks) == 1
    (chunk,) = result.chunks
    assert len(chunk.delivery_ids) == BATCH
    return chunk
