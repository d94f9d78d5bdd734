"""The plan (engine.plan, and its PostgreSQL statements in store.ledger): a retry row is taken
back only once its time has come, whatever the reader's cursor says; a ledger ahead of the
cursor (a stale Redis entry, a restore) is caught up, never sent twice; rows in flight elsewhere
are left alone; finished readers start their next series; for a full batch of 1,000 too."""

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
from scale_support import (
    BATCH,
    BATCH_SLOT,
    STATEMENTS_PER_ROUND,
    batch_readers,
    delivery_statuses,
    one_full_chunk,
    statements,
)
from sqlalchemy import select, update
from time_machine import TimeMachineFixture

from newsletter.core.config import Settings
from newsletter.engine.plan import plan as plan_due
from newsletter.engine.tick import tick
from newsletter.mail.message import Accepted, RetryLater
from newsletter.queue.dueset import RedisQueue, epoch
from newsletter.services import people, preferences, signup
from newsletter.store.db import session_scope
from newsletter.store.models import (
    CLAIMED,
    ENROLLED_ACTIVE,
    RETRY,
    SENT,
    Delivery,
    Enrollment,
    Subscriber,
)

MONDAY = utc(2027, 3, 1, 12)
TUESDAY_9 = utc(2027, 3, 2, 9)  # a UTC reader's first slot
AZORES_TUESDAY_9 = utc(2027, 3, 2, 10)  # the Azores are at -01:00 until 28 March


def _retry(settings: Settings) -> tuple[str, dt.datetime | None, int]:
    with session_scope(settings.database_url) as session:
        (row,) = session.scalars(select(Delivery))
        return row.status, row.retry_at, row.attempts


def test_a_reader_requeued_before_their_pending_retry_waits_for_the_retry_time(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, time_machine: TimeMachineFixture
) -> None:
    """Part 1 got a 429: retry in three hours. Meanwhile the reader saves their preferences
    (moves to the Azores), which re-queues the part at their new 09:00, an hour after the
    first try and before the retry time. The retry time wins: the tick at 10:00 sends nothing
    and puts the reader back in the queue at the retry time; the part goes then, once."""
    time_machine.move_to(TUESDAY_9, tick=True)  # RetryLater is on the provider's (this) clock
    ship(settings, MONDAY)
    sid = add_person(settings, MONDAY, "UTC")
    backend = Scripted([RetryLater(TUESDAY_9 + dt.timedelta(hours=3), "429"), Accepted("m-1")])
    use_backend(monkeypatch, backend)
    assert tick(settings, TUESDAY_9).retry == 1
    status, retry_at, attempts = _retry(settings)
    assert status == RETRY and retry_at is not None and retry_at > AZORES_TUESDAY_9

    during = TUESDAY_9 + dt.timedelta(minutes=30)  # the preference centre, during the back-off
    with session_scope(settings.database_url) as session:
        sub = session.get(Subscriber, sid)
        assert sub is not None
        chosen = signup.chosen_series(session, sub)
        prefs = preferences.Preferences(series_slugs=chosen, timezone="Atlantic/Azores")
        preferences.update_preferences(session, sub, prefs, during)
        changed = people.enrollment_ids(session, sub)
    with session_scope(settings.database_url) as session:
        RedisQueue(settings).sync_enrollments(session, changed)
    enr = enrollments(settings, sid)[0]
    assert (enr.next_part, enr.next_due_at) == (1, AZORES_TUESDAY_9)  # earlier than the retry

    q = RedisQueue(settings)
    early = tick(settings, AZORES_TUESDAY_9, queue=q)
    assert (early.sent, early.skipped) == (0, 1)
    assert len(backend.calls) == 1  # nothing sent early
    assert _retry(settings) == (RETRY, retry_at, attempts)  # the retry row untouched
    assert q.redis.zscore(q.due_key, str(enr.id)) == epoch(retry_at)  # due again at the retry
    assert tick(settings, retry_at - dt.timedelta(minutes=1), queue=q).sent == 0
    assert tick(settings, retry_at, queue=q).sent == 1
    assert len(backend.calls) == 2
    assert [(r[2], r[3]) for r in ledger(settings)] == [(1, SENT)]
    assert enrollments(settings, sid)[0].next_part == 2


def test_stale_or_duplicate_redis_entries_never_double_send(settings: Settings) -> None:
    ship(settings, MONDAY)
    add_person(settings, MONDAY, "UTC")
    q = RedisQueue(settings)
    tick(settings, TUESDAY_9)
    with session_scope(settings.database_url) as session:
        eid = next(iter(enrollments(settings, ledger(settings)[0][0] or 0))).id
        # the cursor falls behind the ledger (e.g. an old Redis snapshot + a DB restore)
        session.execute(
            update(Enrollment)
            .where(Enrollment.id == eid)
            .values(next_part=1, next_due_at=TUESDAY_9)
        )
    q.schedule(eid, TUESDAY_9)
    summary = tick(settings, TUESDAY_9 + dt.timedelta(minutes=5))
    assert summary.sent == 0 and summary.skipped == 1
    assert len(outbox_mails(settings)) == 1
    assert enrollments(settings, ledger(settings)[0][0] or 0)[0].next_part == 2


def test_full_batch_whose_ledger_is_ahead_of_the_cursor_catches_up(settings: Settings) -> None:
    batch_readers(settings)
    assert tick(settings, BATCH_SLOT).sent == BATCH
    # the cursors fall behind the ledger (a crash between the two writes, an old backup)
    with session_scope(settings.database_url) as session:
        session.execute(
            update(Enrollment)
            .where(Enrollment.next_part == 2)
            .values(next_part=1, next_due_at=BATCH_SLOT)
        )
        RedisQueue(settings).rebuild(session)
    with statements(settings) as sql:
        result = plan_due(settings, BATCH_SLOT + dt.timedelta(minutes=1))
    assert (result.claimed, result.skipped, result.chunks) == (BATCH, BATCH, [])
    assert len(sql) <= STATEMENTS_PER_ROUND + BATCH // 100, len(sql)
    with session_scope(settings.database_url) as session:
        parts = set(
            session.scalars(select(Enrollment.next_part).where(Enrollment.state == ENROLLED_ACTIVE))
        )
        dues = set(
            session.scalars(
                select(Enrollment.next_due_at).where(Enrollment.state == ENROLLED_ACTIVE)
            )
        )
    assert parts == {2} and dues == {BATCH_SLOT + dt.timedelta(days=7)}
    assert delivery_statuses(settings) == {SENT: BATCH}  # nobody sent part 1 again


def test_full_batch_in_flight_elsewhere_is_left_alone(settings: Settings) -> None:
    batch_readers(settings)
    one_full_chunk(settings)  # claimed by a tick whose send task has not run yet
    with session_scope(settings.database_url) as session:
        RedisQueue(settings).rebuild(session)  # e.g. Redis lost the lease meanwhile
    with statements(settings) as sql:
        result = plan_due(settings, BATCH_SLOT + dt.timedelta(minutes=1))
    assert (result.claimed, result.skipped, result.chunks) == (BATCH, BATCH, [])
    assert len(sql) <= STATEMENTS_PER_ROUND, sql.seen
    assert delivery_statuses(settings) == {CLAIMED: BATCH}


def test_full_batch_of_finished_readers_starts_their_next_series(settings: Settings) -> None:
    """Everyone is past the last part: each finishes the series and starts the next one.

    Not yet set-based: a series end goes through schedule.place one reader at a time (about
    six statements each, on every database). Bounded here so it can only get better."""
    batch_readers(settings)
    with session_scope(settings.database_url) as session:
        session.execute(
            update(Enrollment)
            .where(Enrollment.state == ENROLLED_ACTIVE)
            .values(next_part=99, next_due_at=BATCH_SLOT)
        )
        RedisQueue(settings).rebuild(session)
    with statements(settings) as sql:
        result = plan_due(settings, BATCH_SLOT)
    assert (result.claimed, result.skipped, result.chunks) == (BATCH, BATCH, [])
    assert len(sql) <= STATEMENTS_PER_ROUND + 6 * BATCH, len(sql)
    with session_scope(settings.database_url) as session:
        active = session.execute(
            select(Enrollment.series_id, Enrollment.next_part).where(
                Enrollment.state == ENROLLED_ACTIVE
            )
        ).all()
    assert len(active) == BATCH and len({series for series, _ in active}) == 1
    assert {part for _, part in active} == {1}
