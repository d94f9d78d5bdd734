"""Benchmark support: the bulk enrollment path gives the same rows as `enroll` one by one."""

from __future__ import annotations

import secrets

from engine_support import ship, utc
from sqlalchemy import select

from newsletter import schedule
from newsletter.config import Settings
from newsletter.db import session_scope
from newsletter.models import ACTIVE, FORTNIGHTLY, WEEKLY, Enrollment, Subscriber


def _people(settings: Settings, zones: list[tuple[str, str]]) -> list[int]:
    now = utc(2027, 3, 1, 12)
    with session_scope(settings.database_url) as session:
        subs = [
            Subscriber(
                public_id=secrets.token_hex(8),
                email=f"b{i}-{secrets.token_hex(3)}@example.org",
                email_key=f"b{i}-{secrets.token_hex(3)}@example.org",
                timezone=zone,
                status=ACTIVE,
                cadence=cadence,
                created_at=now,
                updated_at=now,
            )
            for i, (zone, cadence) in enumerate(zones)
        ]
        session.add_all(subs)
        session.flush()
        return [s.id for s in subs]


def _rows(settings: Settings, ids: list[int]) -> list[tuple[object, ...]]:
    with session_scope(settings.database_url) as session:
        return [
            (e.series_id, e.position, e.next_part, e.state, e.next_due_at)
            for e in session.scalars(
                select(Enrollment)
                .where(Enrollment.subscriber_id.in_(ids))
                .order_by(Enrollment.subscriber_id, Enrollment.position)
            )
        ]


def test_enroll_new_matches_enroll_one_by_one(settings: Settings) -> None:
    now = utc(2027, 3, 1, 12)
    ship(settings, now)
    zones = [("Europe/London", WEEKLY), ("America/New_York", FORTNIGHTLY), ("Asia/Tokyo", WEEKLY)]
    one_by_one = _people(settings, zones)
    bulk = _people(settings, zones)
    with session_scope(settings.database_url) as session:
        for sid in one_by_one:
            sub = session.get(Subscriber, sid)
            assert sub is not None
            schedule.enroll(session, sub, now)
    with session_scope(settings.database_url) as session:
        active = schedule.enroll_new(session, bulk, now)
    assert _rows(settings, one_by_one) == _rows(settings, bulk)
    with session_scope(settings.database_url) as session:
        states = set(session.scalars(select(Enrollment.state).where(Enrollment.id.in_(active))))
    assert len(active) == len(bulk) and states == {"active"}
