"""Sending one chunk (engine.send): the send-time re-check of the reader's cursor, and the
hand-over compare-and-set between two copies of one chunk."""

from __future__ import annotations

import datetime as dt
import threading

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
from sqlalchemy import select, update
from time_machine import TimeMachineFixture

from newsletter.core.config import Settings
from newsletter.engine import send as sending
from newsletter.engine.plan import Chunk
from newsletter.engine.plan import plan as plan_due
from newsletter.engine.send import send_chunk
from newsletter.engine.summary import TickSummary
from newsletter.engine.tick import tick
from newsletter.mail.message import Accepted, RetryLater
from newsletter.queue.dueset import RedisQueue, epoch
from newsletter.store.db import session_scope
from newsletter.store.models import RETRY, SENT, Delivery, Enrollment

MONDAY = utc(2027, 3, 1, 12)
TUESDAY_9 = utc(2027, 3, 2, 9)  # the first slot (UTC readers)
NEXT_TUESDAY_9 = TUESDAY_9 + dt.timedelta(weeks=1)


def planned(settings: Settings, people: int = 1) -> tuple[list[int], RedisQueue, Chunk]:
    """`people` UTC readers whose part 1 is planned (claimed, not handed) at Tuesday 09:00."""
    ship(settings, MONDAY)
    sids = [add_person(settings, MONDAY, "UTC") for _ in range(people)]
    q = RedisQueue(settings)
    (chunk,) = plan_due(settings, TUESDAY_9, queue=q).chunks
    assert len(chunk.delivery_ids) == people
    return sids, q, chunk


def test_a_cursor_moved_between_claim_and_send_is_not_sent_the_stale_part(
    settings: Settings,
) -> None:
    """The row for part 1 was claimed, then the reader's cursor moved on to part 2 (another
    writer settled part 1 meanwhile: a duplicate task's catch-up, a restore). The stale row is
    not sent: it is forgotten (never handed), the cursor keeps its place and Redis its due time,
    and part 2 goes out at its own slot, once."""
    (sid,), q, chunk = planned(settings)
    eid = enrollments(settings, sid)[0].id
    with session_scope(settings.database_url) as session:
        session.execute(
            update(Enrollment)
            .where(Enrollment.id == eid)
            .values(next_part=2, next_due_at=NEXT_TUESDAY_9)
        )
    summary = send_chunk(settings, chunk, TUESDAY_9, queue=q)
    assert (summary.sent, summary.skipped, summary.failed) == (0, 1, 0)
    assert outbox_mails(settings) == []
    assert ledger(settings) == []  # claimed -> forgotten, not sent, not failed
    enr = enrollments(settings, sid)[0]
    assert (enr.next_part, enr.next_due_at) == (2, NEXT_TUESDAY_9)
    assert q.redis.zscore(q.due_key, str(eid)) == epoch(NEXT_TUESDAY_9)
    assert tick(settings, NEXT_TUESDAY_9 - dt.timedelta(minutes=1)).sent == 0
    assert tick(settings, NEXT_TUESDAY_9).sent == 1
    assert [(r[2], r[3]) for r in ledger(settings)] == [(2, SENT)]
    assert len(outbox_mails(settings)) == 1


def test_two_copies_of_one_chunk_handed_over_interleaved_send_each_reader_once(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two copies of one planned chunk (a redelivered task) run in two threads. A barrier holds
    both until each has read the rows as claimed and not handed; each then hands over, and
    the one that got the rows calls the provider only after the other one has tried too
    (a second barrier). The compare-and-set gives the rows to exactly one copy."""
    sids, _, chunk = planned(settings, people=3)
    real = sending._hand_over
    read_both = threading.Barrier(2, timeout=120)  # a hang guard, not a timing assertion
    tried_both = threading.Barrier(2, timeout=120)
    held: list[int] = []

    def interleaved(*args: object) -> list[sending.Row]:
        read_both.wait()  # both copies hold the rows they read as claimed
        mine = real(*args)  # type: ignore[arg-type]
        held.append(len(mine))
        tried_both.wait()  # the other copy's hand-over ran before anyone calls the provider
        return mine

    monkeypatch.setattr(sending, "_hand_over", interleaved)
    summaries: list[TickSummary] = []
    errors: list[BaseException] = []

    def copy() -> None:
        try:
            summaries.append(send_chunk(settings, chunk, TUESDAY_9, queue=RedisQueue(settings)))
        except BaseException as exc:  # surfaced below, and the other copy is let go
            errors.append(exc)
            read_both.abort()
            tried_both.abort()

    threads = [threading.Thread(target=copy) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(held) == [0, 3]  # one copy got every row, the other none
    assert sorted(s.sent for s in summaries) == [0, 3]
    assert len(outbox_mails(settings)) == 3  # each reader once
    with session_scope(settings.database_url) as session:
        rows = [(d.status, d.attempts) for d in session.scalars(select(Delivery))]
    assert rows == [(SENT, 1)] * 3  # handed once each
    assert [enrollments(settings, s)[0].next_part for s in sids] == [2, 2, 2]


def test_a_copy_that_read_the_rows_before_the_other_was_told_429_sends_nothing_early(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, time_machine: TimeMachineFixture
) -> None:
    """Copy B reads the claimed rows; copy A hands them over and the provider answers 429 (the
    rows become retries, due in an hour); only then does B hand over. A retry row is not
    claimed: B must hand over nothing, and nothing goes out before the retry time."""
    time_machine.move_to(TUESDAY_9, tick=True)  # RetryLater is on the provider's (this) clock
    (sid,), q, chunk = planned(settings)
    retry_at = TUESDAY_9 + dt.timedelta(hours=1)
    backend = Scripted([RetryLater(retry_at, "429 too many requests"), Accepted("m-1")])
    use_backend(monkeypatch, backend)
    real = sending._hand_over
    first: list[TickSummary] = []
    calls: list[int] = []

    def the_other_copy_first(*args: object) -> list[sending.Row]:
        calls.append(1)
        if len(calls) == 1:  # copy B, between its read and its hand-over: copy A runs whole
            first.append(send_chunk(settings, chunk, TUESDAY_9, queue=q))
        return real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(sending, "_hand_over", the_other_copy_first)
    late = send_chunk(settings, chunk, TUESDAY_9, queue=q)
    assert (first[0].retry, first[0].sent) == (1, 0)
    assert (late.sent, late.retry) == (0, 0)
    assert len(backend.calls) == 1  # the provider was asked once
    with session_scope(settings.database_url) as session:
        (row,) = session.scalars(select(Delivery))
        assert (row.status, row.attempts) == (RETRY, 1)
        assert row.retry_at is not None and row.retry_at > TUESDAY_9
    monkeypatch.setattr(sending, "_hand_over", real)
    assert tick(settings, TUESDAY_9 + dt.timedelta(minutes=30), queue=q).sent == 0
    assert len(backend.calls) == 1
    assert tick(settings, retry_at + dt.timedelta(minutes=1), queue=q).sent == 1
    assert [(r[2], r[3]) for r in ledger(settings)] == [(1, SENT)]
    assert enrollments(settings, sid)[0].next_part == 2
