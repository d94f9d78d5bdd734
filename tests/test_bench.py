"""Benchmark support: bulk enrollment gives the same rows as `enroll`; a burst's operation counts."""

from __future__ import annotations

import datetime as dt
import secrets

from engine_support import ship, utc
from pydantic import SecretStr
from sendgrid_fake import API_KEY, FakeSendGrid
from sqlalchemy import event, func, select

from newsletter import dispatch, schedule
from newsletter.config import Settings
from newsletter.db import get_engine, session_scope
from newsletter.models import ACTIVE, FORTNIGHTLY, WEEKLY, Enrollment, Subscriber
from newsletter.queue import RedisQueue


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


def _seed_burst(settings: Settings, n: int) -> dt.datetime:
    """n active subscribers enrolled through schedule.enroll_new, all due at one slot."""
    start = utc(2027, 3, 1, 0)
    ship(settings, start)
    with session_scope(settings.database_url) as session:
        base = session.scalar(select(func.max(Subscriber.id))) or 0
        session.execute(
            Subscriber.__table__.insert(),  # type: ignore[attr-defined]
            [
                {
                    "id": base + i + 1,
                    "public_id": secrets.token_hex(8),
                    "email": f"burst{i}@example.org",
                    "email_key": f"burst{i}@example.org",
                    "name": f"Reader {i}" if i % 2 else None,
                    "timezone": "UTC",
                    "status": ACTIVE,
                    "cadence": WEEKLY,
                    "takes_new_series": True,
                    "created_at": start,
                    "updated_at": start,
                }
                for i in range(n)
            ],
        )
        ids = schedule.enroll_new(session, [base + i + 1 for i in range(n)], start)
        due = session.scalar(select(func.min(Enrollment.next_due_at)).where(Enrollment.id.in_(ids)))
        RedisQueue(settings).rebuild(session)
    assert due is not None
    return due


def test_a_burst_costs_a_constant_number_of_operations_per_chunk(settings: Settings) -> None:
    """1,000 recipients: one chunk, one provider request, a handful of SQL statements and Redis
    round trips (bulk paths), not one per recipient. Counts, never time."""
    slot = _seed_burst(settings, 1000)
    queue = RedisQueue(settings)
    sql = [0]

    def on_sql(*_: object) -> None:
        sql[0] += 1

    engine = get_engine(settings.database_url)
    event.listen(engine, "before_cursor_execute", on_sql)
    trips = [0]
    original = queue.redis.connection_pool.get_connection

    def counting(*args: object, **kwargs: object) -> object:
        conn = original(*args, **kwargs)
        send = conn.send_packed_command

        def counted(command: object, check_health: bool = True) -> None:
            trips[0] += 1
            send(command, check_health)

        conn.send_packed_command = counted  # type: ignore[method-assign]
        return conn

    queue.redis.connection_pool.get_connection = counting  # type: ignore[method-assign]
    with FakeSendGrid() as fake:
        sg = settings.model_copy(
            update={
                "mail_backend": "sendgrid",
                "sendgrid_api_key": SecretStr(API_KEY),
                "sendgrid_host": fake.url,
            }
        )
        try:
            result = dispatch.plan(sg, slot, queue=queue)
            plan_ops = (sql[0], trips[0])
            assert result.claimed == 1000 and len(result.chunks) == 1
            summary = dispatch.send_chunk(sg, result.chunks[0], slot, queue=queue)
        finally:
            event.remove(engine, "before_cursor_execute", on_sql)
            queue.redis.connection_pool.get_connection = original  # type: ignore[method-assign]
        send_ops = (sql[0] - plan_ops[0], trips[0] - plan_ops[1])
        assert summary.sent == 1000
        assert len(fake.requests) == 1 and len(fake.requests[0].emails) == 1000
        assert fake.problems == []
    print(
        f"plan: {plan_ops[0]} SQL, {plan_ops[1]} Redis; send_chunk: {send_ops[0]} SQL, {send_ops[1]} Redis"
    )
    assert plan_ops[0] <= 6 and plan_ops[1] <= 3
    assert send_ops[0] <= 15 and send_ops[1] <= 2
    with session_scope(settings.database_url) as session:
        moved = session.scalar(
            select(func.count()).where(
                Enrollment.next_part == 2, Enrollment.next_due_at == slot + dt.timedelta(days=7)
            )
        )
    assert moved == 1000
