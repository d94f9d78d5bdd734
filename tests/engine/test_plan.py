"""The plan (engine.plan, and its PostgreSQL statements in store.ledger): a retry row is taken
back only once its time has come, whatever the reader's cursor says."""

from __future__ import annotations

import datetime as dt

import pytest
from engine_support import Scripted, add_person, enrollments, ledger, ship, use_backend, utc
from sqlalchemy import select
from time_machine import TimeMachineFixture

from newsletter.core.config import Settings
from newsletter.engine.tick import tick
from newsletter.mail.message import Accepted, RetryLater
from newsletter.queue.dueset import RedisQueue, epoch
from newsletter.services import people, preferences, signup
from newsletter.store.db import session_scope
from newsletter.store.models import RETRY, SENT, Delivery, Subscriber

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
