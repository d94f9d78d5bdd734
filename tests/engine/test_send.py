"""Sending one chunk (engine.send): the send-time re-check of the reader (unsubscribed,
suppressed, paused, the cursor moved), the provider's answers (retry later, failed, halted, no
answer), render and template errors, the hand-over compare-and-set between two copies of one
chunk, and the same branches for a full batch of 1,000 in a bounded number of statements."""

from __future__ import annotations

import datetime as dt
import threading
from pathlib import Path

import pytest
from engine_support import (
    Scripted,
    add_person,
    enrollments,
    ledger,
    outbox_mails,
    own_templates,
    ship,
    use_backend,
    utc,
    wait_for_a_lock_wait,
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
from sendgrid_fake import FakeSendGrid
from sqlalchemy import select, update
from time_machine import TimeMachineFixture

from newsletter.core.config import Settings
from newsletter.core.identity import email_hash, suppression_key
from newsletter.engine import schedule
from newsletter.engine import send as sending
from newsletter.engine.plan import Chunk
from newsletter.engine.plan import plan as plan_due
from newsletter.engine.reconcile import reconcile
from newsletter.engine.send import RENDER_RETRY, send_chunk
from newsletter.engine.summary import TickSummary
from newsletter.engine.tick import tick
from newsletter.mail.message import TEMPLATE, Accepted, Failed, Message, RetryLater, SendingHalted
from newsletter.queue.dueset import RedisQueue, epoch
from newsletter.services import preferences, signup
from newsletter.store import stats
from newsletter.store.db import session_scope
from newsletter.store.halt import halt, halted
from newsletter.store.models import (
    CLAIMED,
    ENROLLED_ACTIVE,
    FAILED,
    RETRY,
    SENT,
    UNSUBSCRIBED,
    Delivery,
    Enrollment,
    Subscriber,
    Suppression,
)

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


def test_unsubscribed_and_suppressed_get_nothing_even_if_queued(settings: Settings) -> None:
    ship(settings, MONDAY)
    gone = add_person(settings, MONDAY, "UTC")
    erased = add_person(settings, MONDAY, "UTC")
    erased_keyed = add_person(settings, MONDAY, "UTC")
    with session_scope(settings.database_url) as session:
        sub = session.get(Subscriber, gone)
        assert sub is not None
        sub.status = UNSUBSCRIBED  # Redis still holds the entry: dispatch must re-check
        other = session.get(Subscriber, erased)
        assert other is not None
        # stored the old way (plain SHA-256) and the current way (keyed): both win at send time
        session.add(Suppression(email_hash=email_hash(other.email), reason="erased", keyed=False))
        third = session.get(Subscriber, erased_keyed)
        assert third is not None
        key = suppression_key(settings.secret, third.email)
        session.add(Suppression(email_hash=key, reason="erased"))
    summary = tick(settings, TUESDAY_9)
    assert summary.sent == 0 and summary.skipped == 3
    assert ledger(settings) == []
    assert outbox_mails(settings) == []


def test_retry_later_backs_off_then_sends_once(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, time_machine: TimeMachineFixture
) -> None:
    # RetryLater.at is on the provider's clock, which dispatch reads as the real one: here the
    # provider answers at the tick's moment, so the clock is there too.
    time_machine.move_to(TUESDAY_9, tick=True)
    ship(settings, MONDAY)
    sid = add_person(settings, MONDAY, "UTC")
    retry_at = TUESDAY_9 + dt.timedelta(minutes=10)
    backend = Scripted([RetryLater(retry_at, "429"), Accepted("m-1")])
    use_backend(monkeypatch, backend)
    first = tick(settings, TUESDAY_9)
    assert (first.retry, first.failed) == (1, 0)  # a retry is not a failure
    assert ledger(settings)[0][3] == RETRY
    assert tick(settings, TUESDAY_9 + dt.timedelta(minutes=5)).due == 0
    second = tick(settings, retry_at)
    assert second.sent == 1
    assert ledger(settings)[0][3] == SENT
    assert len(backend.calls) == 2
    enr = enrollments(settings, sid)[0]
    assert enr.next_part == 2 and enr.next_due_at == utc(2027, 3, 9, 9)


def test_permanent_failure_is_recorded_and_the_cursor_moves_on(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    ship(settings, MONDAY)
    sid = add_person(settings, MONDAY, "UTC")
    use_backend(monkeypatch, Scripted([Failed("550 no such user")]))
    assert tick(settings, TUESDAY_9).failed == 1
    assert ledger(settings)[0][3] == FAILED
    assert enrollments(settings, sid)[0].next_part == 2


def test_sending_halted_stops_and_keeps_rows_retryable(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from newsletter.store.halt import halted, resume

    ship(settings, MONDAY)
    add_person(settings, MONDAY, "UTC")
    backend = Scripted([SendingHalted("401 bad key"), Accepted("m-2")])
    use_backend(monkeypatch, backend)
    tick(settings, TUESDAY_9)
    with session_scope(settings.database_url) as session:
        assert halted(session) is not None
    assert ledger(settings)[0][3] == RETRY
    assert tick(settings, TUESDAY_9 + dt.timedelta(minutes=2)).due == 0
    with session_scope(settings.database_url) as session:
        resume(session)
    assert tick(settings, TUESDAY_9 + dt.timedelta(minutes=3)).sent == 1
    assert len(backend.calls) == 2


def test_unsubscribe_between_claim_and_send_sends_nothing(settings: Settings) -> None:
    (sid,), q, chunk = planned(settings)
    with session_scope(settings.database_url) as session:
        sub = session.get(Subscriber, sid)
        assert sub is not None
        sub.status = UNSUBSCRIBED
    summary = send_chunk(settings, chunk, TUESDAY_9, queue=q)
    assert (summary.sent, summary.skipped) == (0, 1)
    assert ledger(settings) == []  # never handed: forgotten, so a resubscribe can still send it
    assert outbox_mails(settings) == []
    assert enrollments(settings, sid)[0].next_part == 1


def test_pause_between_claim_and_send_holds_the_part_until_the_pause_ends(
    settings: Settings,
) -> None:
    from newsletter.engine import schedule

    (sid,), q, chunk = planned(settings)
    with session_scope(settings.database_url) as session:  # the preference centre, meanwhile
        sub = session.get(Subscriber, sid)
        assert sub is not None
        sub.paused_until = dt.date(2027, 3, 20)
        schedule.apply_preferences(session, sub, TUESDAY_9)
    summary = send_chunk(settings, chunk, TUESDAY_9, queue=q)
    assert (summary.sent, summary.skipped) == (0, 1)
    assert outbox_mails(settings) == []
    enr = enrollments(settings, sid)[0]
    assert enr.next_part == 1 and enr.next_due_at == utc(2027, 3, 23, 9)
    assert tick(settings, utc(2027, 3, 23, 9)).sent == 1  # after the pause, once
    assert [(r[2], r[3]) for r in ledger(settings)] == [(1, SENT)]


def test_pause_saved_during_the_provider_call_holds_the_next_part(settings: Settings) -> None:
    """The part already handed goes out, but the pause decides when the next one is due."""
    from newsletter.engine import schedule

    (sid,), q, chunk = planned(settings)

    def pause_meanwhile(ids: list[int]) -> None:
        with session_scope(settings.database_url) as session:
            sub = session.get(Subscriber, sid)
            assert sub is not None
            sub.paused_until = dt.date(2027, 4, 1)
            schedule.apply_preferences(session, sub, TUESDAY_9)

    summary = send_chunk(settings, chunk, TUESDAY_9, queue=q, before_send=pause_meanwhile)
    assert summary.sent == 1
    enr = enrollments(settings, sid)[0]
    assert enr.next_part == 2 and enr.next_due_at == utc(2027, 4, 6, 9)
    assert tick(settings, utc(2027, 3, 9, 9)).sent == 0


def test_pause_saved_while_the_send_records_waits_for_it_or_is_seen(settings: Settings) -> None:
    """A preference save that is still open (not committed) when the send re-reads the
    subscriber: the send waits for it and schedules the next part after the pause, instead of
    writing next week over the pause once the save commits."""
    import threading

    if not settings.database_url.startswith("postgresql"):
        pytest.skip("row locks are PostgreSQL's; SQLite lets one writer at a time in anyway")
    (sid,), q, chunk = planned(settings)
    committed: list[threading.Thread] = []

    def save_opens_and_commits_later(ids: list[int]) -> None:
        session = session_scope(settings.database_url).__enter__()
        sub = session.get(Subscriber, sid)
        assert sub is not None
        slug = "myths-about-psychotherapy"
        prefs = preferences.Preferences(series_slugs=[slug], paused_until=dt.date(2027, 4, 1))
        preferences.update_preferences(session, sub, prefs, TUESDAY_9)
        session.flush()  # the enrollment and subscriber rows are locked by this open save

        def commit_once_the_send_waits() -> None:
            # a barrier, not a sleep: commit only once PostgreSQL shows the send blocked on
            # this save's row lock (without the lock it never blocks, reads the old values
            # and the assertion below fails)
            wait_for_a_lock_wait(settings.database_url)
            session.commit()
            session.close()

        committed.append(threading.Thread(target=commit_once_the_send_waits))
        committed[0].start()

    summary = send_chunk(
        settings, chunk, TUESDAY_9, queue=q, before_send=save_opens_and_commits_later
    )
    committed[0].join()
    assert summary.sent == 1
    enr = enrollments(settings, sid)[0]
    assert enr.next_part == 2 and enr.next_due_at == utc(2027, 4, 6, 9)  # not 9 March


def test_send_task_started_late_is_not_taken_for_lost_during_its_provider_call(
    settings: Settings,
) -> None:
    """A send task that starts more than a lease after its tick (a backlog) runs at its own
    moment (tasks.task_moment: the tick's plus the wait), and stamps the hand-over with it:
    a reconcile during its provider call must not take the rows for lost (outbox: no .eml
    yet), nor a tick send them again."""
    from newsletter.tasks import task_moment

    tick_moment = TUESDAY_9
    ship(settings, MONDAY)
    add_person(settings, MONDAY, "UTC")
    q = RedisQueue(settings)
    (chunk,) = plan_due(settings, tick_moment, queue=q).chunks
    backlog = 2 * settings.lease_seconds
    moment = task_moment(tick_moment.isoformat(), 1000.0, clock=lambda: 1000.0 + backlog)
    assert moment == tick_moment + dt.timedelta(seconds=backlog)

    def reconcile_and_tick_meanwhile(ids: list[int]) -> None:
        during = moment + dt.timedelta(seconds=1)
        assert reconcile(settings, during, queue=q).resent == 0
        tick(settings, during, queue=q)

    summary = send_chunk(settings, chunk, moment, queue=q, before_send=reconcile_and_tick_meanwhile)
    assert summary.sent == 1
    assert len(outbox_mails(settings)) == 1
    assert [(r[2], r[3]) for r in ledger(settings)] == [(1, SENT)]


def test_unsubscribe_during_the_provider_call_leaves_nothing_due(settings: Settings) -> None:
    """The handed part goes out and the cursor moves on, but nothing is due for someone who
    left: coming back later resumes at a slot after the return, not at once at any hour."""

    (sid,), q, chunk = planned(settings)

    def unsubscribe_meanwhile(ids: list[int]) -> None:
        with session_scope(settings.database_url) as session:
            sub = session.get(Subscriber, sid)
            assert sub is not None
            assert preferences.unsubscribe(session, sub, TUESDAY_9)

    summary = send_chunk(settings, chunk, TUESDAY_9, queue=q, before_send=unsubscribe_meanwhile)
    assert summary.sent == 1
    enr = enrollments(settings, sid)[0]
    assert enr.next_part == 2 and enr.next_due_at is None
    back = utc(2027, 3, 31, 3)  # a Wednesday, 03:00
    with session_scope(settings.database_url) as session:
        sub = session.get(Subscriber, sid)
        assert sub is not None and signup.resubscribe(session, sub, back)
        due = schedule.first_article_at(session, sub)
        assert due is not None and due > back


def test_redelivered_send_task_that_sees_a_halt_leaves_sent_rows_sent(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A duplicate copy of a send task read the rows before the first copy sent them; when it
    then finds sending halted it must not turn the sent rows back into retries."""
    from newsletter.store.halt import halt

    (sid,), q, chunk = planned(settings)
    real = sending._is_halted
    raced: list[bool] = []

    def first_copy_finishes_then_a_halt(session: object, settings_: Settings) -> bool:
        if not raced:
            raced.append(True)
            assert send_chunk(settings, chunk, TUESDAY_9, queue=q).sent == 1
            with session_scope(settings.database_url) as other:
                halt(other, "401 bad key")
        return real(session, settings_)  # type: ignore[arg-type]

    monkeypatch.setattr(sending, "_is_halted", first_copy_finishes_then_a_halt)
    assert send_chunk(settings, chunk, TUESDAY_9, queue=q).sent == 0
    assert [(r[2], r[3]) for r in ledger(settings)] == [(1, SENT)]
    assert enrollments(settings, sid)[0].next_part == 2
    assert len(outbox_mails(settings)) == 1


def test_template_error_halts_sends_nothing_and_keeps_the_cursor(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A template the practice broke halts sending (the file and line as the reason); the row
    waits, due as before, and goes out once after the fix (more in test_template_halt)."""
    own = own_templates(settings, tmp_path / "templates", monkeypatch)
    ship(own, MONDAY)
    sid = add_person(own, MONDAY, "UTC")
    article = tmp_path / "templates" / "email" / "article.html"
    good = article.read_text()
    article.write_text(good.replace("{{ part_number }}", "{{ part_numbr }}"))

    summary = tick(own, TUESDAY_9)
    assert (summary.sent, summary.retry, summary.failed) == (0, 1, 0)  # retried, not failed
    (row,) = ledger(own)
    assert row[3] == RETRY
    assert outbox_mails(own) == []
    enr = enrollments(own, sid)[0]
    assert enr.next_part == 1 and enr.next_due_at == TUESDAY_9
    with session_scope(own.database_url) as session:
        halt = halted(session, own)
    assert halt is not None and halt.kind == TEMPLATE
    assert f"{article}:3: undefined variable: 'part_numbr' is undefined" in halt.reason
    assert tick(own, TUESDAY_9 + RENDER_RETRY).sent == 0  # halted until the fix

    article.write_text(good)
    assert tick(own, TUESDAY_9 + 2 * RENDER_RETRY).sent == 1
    assert tick(own, TUESDAY_9 + 3 * RENDER_RETRY).sent == 0
    assert len(outbox_mails(own)) == 1


def test_a_render_error_outside_the_templates_retries_in_an_hour_without_a_halt(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An error not raised by a template (a fault of our own code) is not the practice's to
    fix: the chunk is retried in RENDER_RETRY, nothing sent or failed, sending not halted."""
    ship(settings, MONDAY)
    sid = add_person(settings, MONDAY, "UTC")

    def broken(*args: object, **kwargs: object) -> Message:
        raise ValueError("the renderer's own mistake")

    monkeypatch.setattr("newsletter.mail.render.Renderer.article", broken)
    summary = tick(settings, TUESDAY_9)
    assert (summary.sent, summary.retry, summary.failed) == (0, 1, 0)  # retried, not failed
    (row,) = ledger(settings)
    assert row[3] == RETRY
    assert outbox_mails(settings) == []
    enr = enrollments(settings, sid)[0]
    assert enr.next_part == 1 and enr.next_due_at == TUESDAY_9 + RENDER_RETRY
    with session_scope(settings.database_url) as session:
        assert halted(session, settings) is None
    monkeypatch.undo()
    assert tick(settings, TUESDAY_9 + RENDER_RETRY).sent == 1


def test_render_error_leaves_rows_a_duplicate_task_sent_meanwhile(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two copies of one send task: the second reads the rows, the first sends them, then the
    second's render fails. It must not turn the sent row into a retry (a second mail) nor pull
    the enrollment's next part forward to the render retry time."""
    from newsletter.mail.render import Renderer

    (sid,), q, chunk = planned(settings)
    real = Renderer.article
    calls: list[int] = []

    def first_copy_sends_then_this_one_breaks(self: Renderer, *args: object) -> Message:
        calls.append(1)
        if len(calls) == 1:
            assert send_chunk(settings, chunk, TUESDAY_9, queue=q).sent == 1
            raise ValueError("'reader' is undefined")
        return real(self, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(Renderer, "article", first_copy_sends_then_this_one_breaks)
    summary = send_chunk(settings, chunk, TUESDAY_9, queue=q)
    assert (summary.sent, summary.failed) == (0, 0)
    assert [(r[2], r[3]) for r in ledger(settings)] == [(1, SENT)]
    enr = enrollments(settings, sid)[0]
    assert enr.next_part == 2 and enr.next_due_at == TUESDAY_9 + dt.timedelta(days=7)
    assert len(outbox_mails(settings)) == 1


def test_full_batch_429_then_the_retry_round_sends_everyone_once(
    sg: tuple[Settings, FakeSendGrid],
) -> None:
    settings, fake = sg
    batch_readers(settings)
    fake.rate_limit()
    first = tick(settings, BATCH_SLOT)
    assert (first.due, first.sent, first.retry, first.failed) == (BATCH, 0, BATCH, 0)
    assert delivery_statuses(settings) == {RETRY: BATCH}
    with session_scope(settings.database_url) as session:  # the dashboard says the same
        recent = stats.last_days(session, BATCH_SLOT + dt.timedelta(seconds=1))
    assert (recent.retrying, recent.failed) == (BATCH, 0)
    # not yet: every row waits for its retry time (plan: retry not due -> pushed to it)
    assert tick(settings, BATCH_SLOT + dt.timedelta(seconds=30)).due == 0
    with statements(settings) as sql:
        again = tick(settings, BATCH_SLOT + dt.timedelta(minutes=2))
    assert (again.due, again.sent, again.retry, again.failed) == (BATCH, BATCH, 0, 0)
    assert delivery_statuses(settings) == {SENT: BATCH}
    assert len(sql) <= 2 * STATEMENTS_PER_ROUND, sql.seen
    assert sorted(e for r in fake.accepted for e in r.emails) == sorted(
        set(e for r in fake.accepted for e in r.emails)
    )
    assert sum(len(r.emails) for r in fake.accepted) == BATCH


def test_full_batch_that_left_is_skipped_at_plan_and_dropped_at_send(settings: Settings) -> None:
    batch_readers(settings)
    chunk = one_full_chunk(settings)
    with session_scope(settings.database_url) as session:
        session.execute(update(Subscriber).values(status=UNSUBSCRIBED))
    with statements(settings) as sql:
        summary = send_chunk(settings, chunk, BATCH_SLOT)
    assert (summary.sent, summary.skipped) == (0, BATCH)
    assert len(sql) <= STATEMENTS_PER_ROUND, sql.seen
    assert (
        delivery_statuses(settings) == {}
    )  # never handed: forgotten, so a resubscribe sends it then


def test_full_batch_halted_goes_back_to_retry_untouched(settings: Settings) -> None:
    batch_readers(settings)
    chunk = one_full_chunk(settings)
    with session_scope(settings.database_url) as session:
        halt(session, "401 from the provider")
    summary = send_chunk(settings, chunk, BATCH_SLOT)
    assert (summary.sent, summary.retry) == (0, BATCH)
    assert delivery_statuses(settings) == {RETRY: BATCH}


def test_full_batch_refused_whole_fails_each_and_moves_everyone_on(
    sg: tuple[Settings, FakeSendGrid],
) -> None:
    settings, fake = sg
    batch_readers(settings)
    fake.bad_request("The content value must be a string at least one character in length.")
    with statements(settings) as sql:
        summary = tick(settings, BATCH_SLOT)
    assert (summary.sent, summary.failed, summary.retry) == (0, BATCH, 0)
    assert delivery_statuses(settings) == {FAILED: BATCH}
    assert len(sql) <= 2 * STATEMENTS_PER_ROUND, sql.seen
    with session_scope(settings.database_url) as session:
        assert set(
            session.scalars(select(Enrollment.next_part).where(Enrollment.state == ENROLLED_ACTIVE))
        ) == {2}


def test_full_batch_with_no_answer_stays_handed_for_reconcile(
    sg: tuple[Settings, FakeSendGrid],
) -> None:
    settings, fake = sg
    batch_readers(settings)
    fake.drop()
    summary = tick(settings, BATCH_SLOT)
    assert (summary.sent, summary.retry, summary.failed) == (0, BATCH, 0)
    with session_scope(settings.database_url) as session:
        rows = session.execute(
            select(Delivery.status, Delivery.retry_at, Delivery.last_error)
        ).all()
    assert {(s, r) for s, r, _ in rows} == {(CLAIMED, None)}
    assert all((e or "").startswith("outcome unknown") for _, _, e in rows)
    with session_scope(settings.database_url) as session:  # the dashboard says the same
        recent = stats.last_days(session, BATCH_SLOT + dt.timedelta(minutes=1))
    assert (recent.retrying, recent.failed) == (summary.retry, summary.failed)
    # later ticks leave them alone; only reconcile settles them
    assert tick(settings, BATCH_SLOT + dt.timedelta(hours=1)).sent == 0
    assert len(fake.requests) == 1
