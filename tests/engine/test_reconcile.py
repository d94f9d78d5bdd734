"""Reconcile (engine.reconcile): rows handed to the provider before a crash are settled from
what the provider has (sent, or sent again once), a lost send task is queued again, and a
series resumed after a pause is found overdue and sent."""

from __future__ import annotations

import datetime as dt

import pytest
from engine_support import add_person, enrollments, ledger, outbox_mails, ship, utc
from sqlalchemy import select
from time_machine import TimeMachineFixture

from newsletter.core.config import Settings
from newsletter.engine.plan import plan as plan_due
from newsletter.engine.reconcile import reconcile
from newsletter.engine.send import send_chunk
from newsletter.engine.tick import tick
from newsletter.mail.message import Recipient
from newsletter.queue.dueset import RedisQueue
from newsletter.store.db import session_scope
from newsletter.store.models import CLAIMED, SENT, Delivery, Subscriber

MONDAY = utc(2027, 3, 1, 12)
TUESDAY_9 = utc(2027, 3, 2, 9)  # the first slot (UTC and London readers)


def test_crash_during_provider_call_is_reconciled_not_blindly_resent(
    settings: Settings, time_machine: TimeMachineFixture
) -> None:
    """Outbox: the .eml exists for some rows -> sent; the others -> sent again, once."""
    # send_chunk stamps the hand-over with max(now, the clock): with the real clock past this
    # Tuesday, reconcile a lease later would not find the rows stale. The clock is the test's.
    time_machine.move_to(TUESDAY_9, tick=True)
    ship(settings, MONDAY)
    people = [add_person(settings, MONDAY, "UTC") for _ in range(4)]
    q = RedisQueue(settings)
    plan = plan_due(settings, TUESDAY_9, queue=q)
    (chunk,) = plan.chunks
    # The provider took two of them, then the worker died before recording anything.
    from newsletter.mail.backends import get_backend

    real = get_backend(settings)

    class Crash(BaseException):
        pass

    def die(ids: list[int]) -> None:
        with session_scope(settings.database_url) as session:
            subs = {
                d.id: session.get(Subscriber, d.subscriber_id)
                for d in session.scalars(select(Delivery).where(Delivery.id.in_(ids[:2])))
            }
        from newsletter.mail.render import Renderer

        with session_scope(settings.database_url) as session:
            from newsletter.store.models import Part, Series

            series = session.get(Series, chunk.series_id)
            part = session.scalar(
                select(Part).where(Part.series_id == chunk.series_id, Part.number == 1)
            )
            message = Renderer(settings).article(series, part, 4)  # type: ignore[arg-type]
        real.send(
            message,
            [
                Recipient(str(i), s.email, s.name, "https://news.example.org/unsubscribe/x")  # type: ignore[union-attr]
                for i, s in subs.items()
            ],
        )
        raise Crash

    with pytest.raises(Crash):
        send_chunk(settings, chunk, TUESDAY_9, queue=q, before_send=die)
    assert {r[3] for r in ledger(settings)} == {CLAIMED}
    # A redelivered copy of the same task must not send again.
    assert send_chunk(settings, chunk, TUESDAY_9, queue=q).sent == 0
    assert len(outbox_mails(settings)) == 2
    later = TUESDAY_9 + dt.timedelta(seconds=settings.lease_seconds + 60)
    report = reconcile(settings, later, queue=q)
    assert (report.confirmed_sent, report.resent) == (2, 2)
    tick(settings, later)
    assert len(outbox_mails(settings)) == 4
    assert sorted(r[0] for r in ledger(settings) if r[3] == SENT) == sorted(people)
    for sid in people:
        assert enrollments(settings, sid)[0].next_part == 2


def test_lost_send_task_is_requeued_by_reconcile(settings: Settings) -> None:
    ship(settings, MONDAY)
    add_person(settings, MONDAY, "UTC")
    q = RedisQueue(settings)
    plan = plan_due(settings, TUESDAY_9, queue=q)
    assert len(plan.chunks) == 1  # ... and the chunk's Celery message is lost with Redis
    q.redis.delete(q.due_key, q.lease_key, q.marker_key)
    later = TUESDAY_9 + dt.timedelta(seconds=settings.lease_seconds + 60)
    report = reconcile(settings, later, queue=q)
    assert report.rebuilt and report.requeued == 1
    assert tick(settings, later).sent == 1
    assert send_chunk(settings, plan.chunks[0], later, queue=q).sent == 0
    assert len(outbox_mails(settings)) == 1


def test_paused_series_waits_and_resumes(settings: Settings) -> None:
    from newsletter.store.models import LIVE, PAUSED, Series

    ids = ship(settings, MONDAY)
    sid = add_person(settings, MONDAY, "UTC")
    myths = ids["myths-about-psychotherapy"]
    with session_scope(settings.database_url) as session:
        series = session.get(Series, myths)
        assert series is not None
        series.state = PAUSED
    assert tick(settings, TUESDAY_9).sent == 0
    assert RedisQueue(settings).status(TUESDAY_9).total == 0
    with session_scope(settings.database_url) as session:
        series = session.get(Series, myths)
        assert series is not None
        series.state = LIVE
    later = TUESDAY_9 + dt.timedelta(hours=1)
    report = reconcile(settings, later)  # the 5-minute sweep finds it overdue
    assert report.overdue_requeued == 1
    assert tick(settings, later).sent == 1
    assert enrollments(settings, sid)[0].next_part == 2
