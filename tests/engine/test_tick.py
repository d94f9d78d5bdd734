"""A tick (engine.tick): each part at its reader's local slot, once, never before, across DST
changes and far from UTC; every part in order then the next series; part 2 never before part 1;
an empty tick costs the same few operations whatever the number of readers."""

from __future__ import annotations

import datetime as dt

import pytest
from engine_support import (
    Scripted,
    add_person,
    enrollments,
    ledger,
    outbox_mails,
    ship,
    use_backend,
    utc,
)
from sqlalchemy import event, select
from time_machine import TimeMachineFixture

from newsletter.core.config import Settings
from newsletter.engine.tick import tick
from newsletter.mail.message import Accepted, RetryLater
from newsletter.queue.dueset import RedisQueue
from newsletter.store.db import get_engine, session_scope
from newsletter.store.models import ENROLLED_ACTIVE, SENT, Enrollment, Subscriber

MONDAY = utc(2027, 3, 1, 12)
TUESDAY_9 = utc(2027, 3, 2, 9)  # the first slot (UTC and London readers)


def test_first_article_goes_out_at_the_first_slot_not_before(settings: Settings) -> None:
    ship(settings, MONDAY)
    sid = add_person(settings, MONDAY, "Europe/London", name="Anna <b>")
    early = tick(settings, TUESDAY_9 - dt.timedelta(minutes=1))
    assert (early.due, early.sent) == (0, 0)
    summary = tick(settings, TUESDAY_9)
    assert summary.as_dict() == {"due": 1, "sent": 1, "retry": 0, "skipped": 0, "failed": 0}
    (row,) = ledger(settings)
    assert row[0] == sid and row[2] == 1 and row[3] == SENT
    (mail,) = outbox_mails(settings)
    assert mail["List-Unsubscribe"].startswith("<https://news.example.org/unsubscribe/")
    body = mail.as_string()
    assert "%%NL_" not in body
    assert tick(settings, TUESDAY_9).sent == 0  # nothing twice
    enr = enrollments(settings, sid)[0]
    assert enr.next_part == 2 and enr.next_due_at == utc(2027, 3, 9, 9)


@pytest.mark.parametrize(
    ("zone", "joined", "part_1", "part_2"),
    [
        # Los Angeles springs forward on 14 March: 09:00 is 17:00 UTC, then 16:00
        ("America/Los_Angeles", utc(2027, 3, 8, 12), utc(2027, 3, 9, 17), utc(2027, 3, 16, 16)),
        # Chatham (+13:45) falls back to +12:45 on 4 April; its Tuesday 09:00 is Monday in UTC
        ("Pacific/Chatham", utc(2027, 3, 29, 12), utc(2027, 3, 29, 19, 15), utc(2027, 4, 5, 20, 15)),
    ],
)  # fmt: skip
def test_each_part_at_nine_local_far_from_utc_and_across_a_dst_change(
    settings: Settings, zone: str, joined: dt.datetime, part_1: dt.datetime, part_2: dt.datetime
) -> None:
    """The UTC instants are written out (not computed with the code's own helpers): a minute
    before each, nothing; at it, that part, once; the week between them is 7 days less or
    more an hour, so the local time stays 09:00."""
    ship(settings, joined)
    sid = add_person(settings, joined, zone)
    for number, moment in ((1, part_1), (2, part_2)):
        assert tick(settings, moment - dt.timedelta(minutes=1)).sent == 0, number
        assert tick(settings, moment).sent == 1, number
        assert tick(settings, moment).sent == 0, number
    rows = ledger(settings)
    assert [(r[0], r[2], r[3], r[4]) for r in rows] == [
        (sid, 1, SENT, part_1),
        (sid, 2, SENT, part_2),
    ]
    assert len(outbox_mails(settings)) == 2
    assert enrollments(settings, sid)[0].next_part == 3


def test_every_part_in_order_then_the_next_series(settings: Settings) -> None:
    ship(settings, MONDAY)
    sid = add_person(settings, MONDAY, "America/New_York")
    now = MONDAY
    for _ in range(8 * 7 * 24):  # hourly ticks for eight weeks
        now += dt.timedelta(hours=1)
        tick(settings, now)
    rows = ledger(settings)
    assert [(r[1], r[2]) for r in rows] == [(rows[0][1], n) for n in (1, 2, 3, 4)] + [
        (rows[4][1], n) for n in (1, 2)
    ]
    assert all(r[3] == SENT and r[0] == sid for r in rows)
    assert len(outbox_mails(settings)) == 6


def test_part_two_never_before_part_one(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, time_machine: TimeMachineFixture
) -> None:
    ship(settings, MONDAY)
    sid = add_person(settings, MONDAY, "UTC")
    # part 1 keeps failing temporarily for three weeks; it finally goes out on a Monday
    backend = Scripted(
        [RetryLater(TUESDAY_9 + dt.timedelta(days=7 * k + 6), "503") for k in range(3)]
        + [Accepted("m-1"), Accepted("m-2")]
    )
    use_backend(monkeypatch, backend)
    now = TUESDAY_9
    while len([r for r in ledger(settings) if r[3] == SENT]) < 2:
        assert now < TUESDAY_9 + dt.timedelta(weeks=6)
        time_machine.move_to(now, tick=True)  # the provider's RetryLater is on this clock
        tick(settings, now)
        now += dt.timedelta(hours=1)
    rows = ledger(settings)
    assert [(r[2], r[3]) for r in rows] == [(1, SENT), (2, SENT)]
    sent = {r[2]: r[4] for r in rows}
    assert sent[1] is not None and sent[2] is not None and sent[1] < sent[2]
    assert sent[2] - sent[1] >= dt.timedelta(days=6)  # still a week apart
    assert enrollments(settings, sid)[0].next_part == 3


class OpCounter:
    def __init__(self, settings: Settings, queue: RedisQueue) -> None:
        self.sql = 0
        self.redis = 0
        self.engine = get_engine(settings.database_url)
        original = queue.redis.execute_command

        def counted(*args: object, **kwargs: object) -> object:
            self.redis += 1
            return original(*args, **kwargs)

        queue.redis.execute_command = counted  # type: ignore[method-assign]
        original_pipe = queue.redis.pipeline

        def pipeline(*args: object, **kwargs: object) -> object:
            pipe = original_pipe(*args, **kwargs)  # type: ignore[arg-type]
            real = pipe.execute

            def execute(*a: object, **k: object) -> object:
                self.redis += len(pipe.command_stack)
                return real(*a, **k)  # type: ignore[arg-type]

            pipe.execute = execute  # type: ignore[method-assign]
            return pipe

        queue.redis.pipeline = pipeline  # type: ignore[method-assign]
        event.listen(self.engine, "before_cursor_execute", self._sql)

    def _sql(self, *args: object) -> None:
        self.sql += 1

    def close(self) -> None:
        event.remove(self.engine, "before_cursor_execute", self._sql)


def _bulk_enroll(settings: Settings, n: int, due: dt.datetime) -> None:
    """n active subscribers, each in an active enrollment due at `due` (bulk inserts)."""
    from newsletter.store.models import ACTIVE, Series

    with session_scope(settings.database_url) as session:
        series_id = session.scalar(select(Series.id).order_by(Series.order))
        start = session.scalar(select(Subscriber.id).order_by(Subscriber.id.desc())) or 0
        for base in range(0, n, 10_000):
            size = min(10_000, n - base)
            session.execute(
                Subscriber.__table__.insert(),  # type: ignore[attr-defined]
                [
                    {
                        "id": start + base + i + 1,
                        "public_id": f"b{start + base + i}",
                        "email": f"b{start + base + i}@example.org",
                        "email_key": f"b{start + base + i}@example.org",
                        "timezone": "UTC",
                        "status": ACTIVE,
                        "cadence": "weekly",
                        "takes_new_series": True,
                        "created_at": MONDAY,
                        "updated_at": MONDAY,
                    }
                    for i in range(size)
                ],
            )
            session.execute(
                Enrollment.__table__.insert(),  # type: ignore[attr-defined]
                [
                    {
                        "subscriber_id": start + base + i + 1,
                        "series_id": series_id,
                        "position": 1,
                        "next_part": 1,
                        "next_due_at": due,
                        "state": ENROLLED_ACTIVE,
                        "created_at": MONDAY,
                        "updated_at": MONDAY,
                    }
                    for i in range(size)
                ],
            )
        if session.get_bind().dialect.name == "postgresql":
            session.execute(
                __import__("sqlalchemy").text(
                    "SELECT setval('subscribers_id_seq', (SELECT max(id) FROM subscribers))"
                )
            )


def _empty_tick_ops(settings: Settings, now: dt.datetime) -> tuple[int, int]:
    q = RedisQueue(settings)
    counter = OpCounter(settings, q)
    try:
        summary = tick(settings, now, queue=q)
    finally:
        counter.close()
    assert summary.due == 0
    return counter.redis, counter.sql


@pytest.mark.slow  # a scale test (thousands of rows): `make test`, not `make check`
def test_empty_tick_costs_constant_ops_with_100k_enrolled(settings: Settings) -> None:
    ship(settings, MONDAY)
    future = utc(2027, 6, 1, 9)
    _bulk_enroll(settings, 10, future)
    with session_scope(settings.database_url) as session:
        RedisQueue(settings).rebuild(session)
    small = _empty_tick_ops(settings, MONDAY)
    _bulk_enroll(settings, 100_000, future)
    with session_scope(settings.database_url) as session:
        assert RedisQueue(settings).rebuild(session) == 100_010
    large = _empty_tick_ops(settings, MONDAY)
    assert small == large
    redis_ops, sql = large
    print(f"empty tick: {redis_ops} Redis commands, {sql} SQL statements")
    assert redis_ops <= 5 and sql <= 5
