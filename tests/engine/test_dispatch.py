"""Dispatch: ledger-first exactly-once sends, in order, suppression at send time, retries, reconcile."""

from __future__ import annotations

import datetime as dt
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
    utc,
)
from engine_support import use_backend as _use
from sqlalchemy import event, select, text, update
from time_machine import TimeMachineFixture

from newsletter.core.config import Settings
from newsletter.core.identity import email_hash, suppression_key
from newsletter.engine import schedule
from newsletter.engine import send as sending
from newsletter.engine.plan import Chunk
from newsletter.engine.plan import plan as plan_due
from newsletter.engine.reconcile import reconcile
from newsletter.engine.send import RENDER_RETRY, send_chunk
from newsletter.engine.tick import tick
from newsletter.mail.message import (
    TEMPLATE,
    Accepted,
    Failed,
    Message,
    Recipient,
    RetryLater,
    SendingHalted,
)
from newsletter.queue.dueset import RedisQueue
from newsletter.store.db import get_engine, session_scope
from newsletter.store.halt import halted
from newsletter.store.models import (
    CLAIMED,
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
TUESDAY_9_LONDON = utc(2027, 3, 2, 9)


def one_planned_chunk(settings: Settings) -> tuple[int, RedisQueue, Chunk]:
    """One subscriber (UTC) whose part 1 is planned at Tuesday 09:00: (subscriber, queue, chunk)."""
    ship(settings, MONDAY)
    sid = add_person(settings, MONDAY, "UTC")
    q = RedisQueue(settings)
    (chunk,) = plan_due(settings, TUESDAY_9_LONDON, queue=q).chunks
    return sid, q, chunk


def test_first_article_goes_out_at_the_first_slot_not_before(settings: Settings) -> None:
    ship(settings, MONDAY)
    sid = add_person(settings, MONDAY, "Europe/London", name="Anna <b>")
    early = tick(settings, TUESDAY_9_LONDON - dt.timedelta(minutes=1))
    assert (early.due, early.sent) == (0, 0)
    summary = tick(settings, TUESDAY_9_LONDON)
    assert summary.as_dict() == {"due": 1, "sent": 1, "retry": 0, "skipped": 0, "failed": 0}
    (row,) = ledger(settings)
    assert row[0] == sid and row[2] == 1 and row[3] == SENT
    (mail,) = outbox_mails(settings)
    assert mail["List-Unsubscribe"].startswith("<https://news.example.org/unsubscribe/")
    body = mail.as_string()
    assert "%%NL_" not in body
    assert tick(settings, TUESDAY_9_LONDON).sent == 0  # nothing twice
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
    summary = tick(settings, TUESDAY_9_LONDON)
    assert summary.sent == 0 and summary.skipped == 3
    assert ledger(settings) == []
    assert outbox_mails(settings) == []


def test_stale_or_duplicate_redis_entries_never_double_send(settings: Settings) -> None:
    ship(settings, MONDAY)
    add_person(settings, MONDAY, "UTC")
    q = RedisQueue(settings)
    tick(settings, TUESDAY_9_LONDON)
    with session_scope(settings.database_url) as session:
        eid = next(iter(enrollments(settings, ledger(settings)[0][0] or 0))).id
        # the cursor falls behind the ledger (e.g. an old Redis snapshot + a DB restore)
        session.execute(
            update(Enrollment)
            .where(Enrollment.id == eid)
            .values(next_part=1, next_due_at=TUESDAY_9_LONDON)
        )
    q.schedule(eid, TUESDAY_9_LONDON)
    summary = tick(settings, TUESDAY_9_LONDON + dt.timedelta(minutes=5))
    assert summary.sent == 0 and summary.skipped == 1
    assert len(outbox_mails(settings)) == 1
    assert enrollments(settings, ledger(settings)[0][0] or 0)[0].next_part == 2


def test_retry_later_backs_off_then_sends_once(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, time_machine: TimeMachineFixture
) -> None:
    # RetryLater.at is on the provider's clock, which dispatch reads as the real one: here the
    # provider answers at the tick's moment, so the clock is there too.
    time_machine.move_to(TUESDAY_9_LONDON, tick=True)
    ship(settings, MONDAY)
    sid = add_person(settings, MONDAY, "UTC")
    retry_at = TUESDAY_9_LONDON + dt.timedelta(minutes=10)
    backend = Scripted([RetryLater(retry_at, "429"), Accepted("m-1")])
    _use(monkeypatch, backend)
    first = tick(settings, TUESDAY_9_LONDON)
    assert (first.retry, first.failed) == (1, 0)  # a retry is not a failure
    assert ledger(settings)[0][3] == RETRY
    assert tick(settings, TUESDAY_9_LONDON + dt.timedelta(minutes=5)).due == 0
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
    _use(monkeypatch, Scripted([Failed("550 no such user")]))
    assert tick(settings, TUESDAY_9_LONDON).failed == 1
    assert ledger(settings)[0][3] == FAILED
    assert enrollments(settings, sid)[0].next_part == 2


def test_sending_halted_stops_and_keeps_rows_retryable(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from newsletter.store.halt import halted, resume

    ship(settings, MONDAY)
    add_person(settings, MONDAY, "UTC")
    backend = Scripted([SendingHalted("401 bad key"), Accepted("m-2")])
    _use(monkeypatch, backend)
    tick(settings, TUESDAY_9_LONDON)
    with session_scope(settings.database_url) as session:
        assert halted(session) is not None
    assert ledger(settings)[0][3] == RETRY
    assert tick(settings, TUESDAY_9_LONDON + dt.timedelta(minutes=2)).due == 0
    with session_scope(settings.database_url) as session:
        resume(session)
    assert tick(settings, TUESDAY_9_LONDON + dt.timedelta(minutes=3)).sent == 1
    assert len(backend.calls) == 2


def test_crash_during_provider_call_is_reconciled_not_blindly_resent(
    settings: Settings, time_machine: TimeMachineFixture
) -> None:
    """Outbox: the .eml exists for some rows -> sent; the others -> sent again, once."""
    # send_chunk stamps the hand-over with max(now, the clock): with the real clock past this
    # Tuesday, reconcile a lease later would not find the rows stale. The clock is the test's.
    time_machine.move_to(TUESDAY_9_LONDON, tick=True)
    ship(settings, MONDAY)
    people = [add_person(settings, MONDAY, "UTC") for _ in range(4)]
    q = RedisQueue(settings)
    plan = plan_due(settings, TUESDAY_9_LONDON, queue=q)
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
        send_chunk(settings, chunk, TUESDAY_9_LONDON, queue=q, before_send=die)
    assert {r[3] for r in ledger(settings)} == {CLAIMED}
    # A redelivered copy of the same task must not send again.
    assert send_chunk(settings, chunk, TUESDAY_9_LONDON, queue=q).sent == 0
    assert len(outbox_mails(settings)) == 2
    later = TUESDAY_9_LONDON + dt.timedelta(seconds=settings.lease_seconds + 60)
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
    plan = plan_due(settings, TUESDAY_9_LONDON, queue=q)
    assert len(plan.chunks) == 1  # ... and the chunk's Celery message is lost with Redis
    q.redis.delete(q.due_key, q.lease_key, q.marker_key)
    later = TUESDAY_9_LONDON + dt.timedelta(seconds=settings.lease_seconds + 60)
    report = reconcile(settings, later, queue=q)
    assert report.rebuilt and report.requeued == 1
    assert tick(settings, later).sent == 1
    assert send_chunk(settings, plan.chunks[0], later, queue=q).sent == 0
    assert len(outbox_mails(settings)) == 1


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
    from newsletter.store.models import ACTIVE, ENROLLED_ACTIVE, Enrollment, Series

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


def test_unsubscribe_between_claim_and_send_sends_nothing(settings: Settings) -> None:
    sid, q, chunk = one_planned_chunk(settings)
    with session_scope(settings.database_url) as session:
        sub = session.get(Subscriber, sid)
        assert sub is not None
        sub.status = UNSUBSCRIBED
    summary = send_chunk(settings, chunk, TUESDAY_9_LONDON, queue=q)
    assert (summary.sent, summary.skipped) == (0, 1)
    assert ledger(settings) == []  # never handed: forgotten, so a resubscribe can still send it
    assert outbox_mails(settings) == []
    assert enrollments(settings, sid)[0].next_part == 1


def test_pause_between_claim_and_send_holds_the_part_until_the_pause_ends(
    settings: Settings,
) -> None:
    from newsletter.engine import schedule

    sid, q, chunk = one_planned_chunk(settings)
    with session_scope(settings.database_url) as session:  # the preference centre, meanwhile
        sub = session.get(Subscriber, sid)
        assert sub is not None
        sub.paused_until = dt.date(2027, 3, 20)
        schedule.apply_preferences(session, sub, TUESDAY_9_LONDON)
    summary = send_chunk(settings, chunk, TUESDAY_9_LONDON, queue=q)
    assert (summary.sent, summary.skipped) == (0, 1)
    assert outbox_mails(settings) == []
    enr = enrollments(settings, sid)[0]
    assert enr.next_part == 1 and enr.next_due_at == utc(2027, 3, 23, 9)
    assert tick(settings, utc(2027, 3, 23, 9)).sent == 1  # after the pause, once
    assert [(r[2], r[3]) for r in ledger(settings)] == [(1, SENT)]


def test_pause_saved_during_the_provider_call_holds_the_next_part(settings: Settings) -> None:
    """The part already handed goes out, but the pause decides when the next one is due."""
    from newsletter.engine import schedule

    sid, q, chunk = one_planned_chunk(settings)

    def pause_meanwhile(ids: list[int]) -> None:
        with session_scope(settings.database_url) as session:
            sub = session.get(Subscriber, sid)
            assert sub is not None
            sub.paused_until = dt.date(2027, 4, 1)
            schedule.apply_preferences(session, sub, TUESDAY_9_LONDON)

    summary = send_chunk(settings, chunk, TUESDAY_9_LONDON, queue=q, before_send=pause_meanwhile)
    assert summary.sent == 1
    enr = enrollments(settings, sid)[0]
    assert enr.next_part == 2 and enr.next_due_at == utc(2027, 4, 6, 9)
    assert tick(settings, utc(2027, 3, 9, 9)).sent == 0


def test_pause_saved_while_the_send_records_waits_for_it_or_is_seen(settings: Settings) -> None:
    """A preference save that is still open (not committed) when the send re-reads the
    subscriber: the send waits for it and schedules the next part after the pause, instead of
    writing next week over the pause once the save commits."""
    import threading

    from newsletter.services import preferences

    if not settings.database_url.startswith("postgresql"):
        pytest.skip("row locks are PostgreSQL's; SQLite lets one writer at a time in anyway")
    sid, q, chunk = one_planned_chunk(settings)
    committed: list[threading.Thread] = []

    def save_opens_and_commits_later(ids: list[int]) -> None:
        session = session_scope(settings.database_url).__enter__()
        sub = session.get(Subscriber, sid)
        assert sub is not None
        slug = "myths-about-psychotherapy"
        prefs = preferences.Preferences(series_slugs=[slug], paused_until=dt.date(2027, 4, 1))
        preferences.update_preferences(session, sub, prefs, TUESDAY_9_LONDON)
        session.flush()  # the enrollment and subscriber rows are locked by this open save

        def commit_once_the_send_waits() -> None:
            # a barrier, not a sleep: commit only once PostgreSQL shows the send blocked on
            # this save's row lock (without the lock it never blocks, reads the old values
            # and the assertion below fails)
            with get_engine(settings.database_url).connect() as watcher:
                for _ in range(3000):
                    waiting = watcher.execute(
                        text(
                            "SELECT count(*) FROM pg_stat_activity WHERE datname ="
                            " current_database() AND wait_event_type = 'Lock'"
                        )
                    ).scalar()
                    watcher.rollback()  # pg_stat_activity is a snapshot per transaction
                    if waiting:
                        break
                    threading.Event().wait(0.01)
            session.commit()
            session.close()

        committed.append(threading.Thread(target=commit_once_the_send_waits))
        committed[0].start()

    summary = send_chunk(
        settings, chunk, TUESDAY_9_LONDON, queue=q, before_send=save_opens_and_commits_later
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

    tick_moment = TUESDAY_9_LONDON
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
    from newsletter.services import preferences, signup

    sid, q, chunk = one_planned_chunk(settings)

    def unsubscribe_meanwhile(ids: list[int]) -> None:
        with session_scope(settings.database_url) as session:
            sub = session.get(Subscriber, sid)
            assert sub is not None
            assert preferences.unsubscribe(session, sub, TUESDAY_9_LONDON)

    summary = send_chunk(
        settings, chunk, TUESDAY_9_LONDON, queue=q, before_send=unsubscribe_meanwhile
    )
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

    sid, q, chunk = one_planned_chunk(settings)
    real = sending._is_halted
    raced: list[bool] = []

    def first_copy_finishes_then_a_halt(session: object, settings_: Settings) -> bool:
        if not raced:
            raced.append(True)
            assert send_chunk(settings, chunk, TUESDAY_9_LONDON, queue=q).sent == 1
            with session_scope(settings.database_url) as other:
                halt(other, "401 bad key")
        return real(session, settings_)  # type: ignore[arg-type]

    monkeypatch.setattr(sending, "_is_halted", first_copy_finishes_then_a_halt)
    assert send_chunk(settings, chunk, TUESDAY_9_LONDON, queue=q).sent == 0
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

    summary = tick(own, TUESDAY_9_LONDON)
    assert (summary.sent, summary.retry, summary.failed) == (0, 1, 0)  # retried, not failed
    (row,) = ledger(own)
    assert row[3] == RETRY
    assert outbox_mails(own) == []
    enr = enrollments(own, sid)[0]
    assert enr.next_part == 1 and enr.next_due_at == TUESDAY_9_LONDON
    with session_scope(own.database_url) as session:
        halt = halted(session, own)
    assert halt is not None and halt.kind == TEMPLATE
    assert f"{article}:3: undefined variable: 'part_numbr' is undefined" in halt.reason
    assert tick(own, TUESDAY_9_LONDON + RENDER_RETRY).sent == 0  # halted until the fix

    article.write_text(good)
    assert tick(own, TUESDAY_9_LONDON + 2 * RENDER_RETRY).sent == 1
    assert tick(own, TUESDAY_9_LONDON + 3 * RENDER_RETRY).sent == 0
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
    summary = tick(settings, TUESDAY_9_LONDON)
    assert (summary.sent, summary.retry, summary.failed) == (0, 1, 0)  # retried, not failed
    (row,) = ledger(settings)
    assert row[3] == RETRY
    assert outbox_mails(settings) == []
    enr = enrollments(settings, sid)[0]
    assert enr.next_part == 1 and enr.next_due_at == TUESDAY_9_LONDON + RENDER_RETRY
    with session_scope(settings.database_url) as session:
        assert halted(session, settings) is None
    monkeypatch.undo()
    assert tick(settings, TUESDAY_9_LONDON + RENDER_RETRY).sent == 1


def test_render_error_leaves_rows_a_duplicate_task_sent_meanwhile(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two copies of one send task: the second reads the rows, the first sends them, then the
    second's render fails. It must not turn the sent row into a retry (a second mail) nor pull
    the enrollment's next part forward to the render retry time."""
    from newsletter.mail.render import Renderer

    sid, q, chunk = one_planned_chunk(settings)
    real = Renderer.article
    calls: list[int] = []

    def first_copy_sends_then_this_one_breaks(self: Renderer, *args: object) -> Message:
        calls.append(1)
        if len(calls) == 1:
            assert send_chunk(settings, chunk, TUESDAY_9_LONDON, queue=q).sent == 1
            raise ValueError("'reader' is undefined")
        return real(self, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(Renderer, "article", first_copy_sends_then_this_one_breaks)
    summary = send_chunk(settings, chunk, TUESDAY_9_LONDON, queue=q)
    assert (summary.sent, summary.failed) == (0, 0)
    assert [(r[2], r[3]) for r in ledger(settings)] == [(1, SENT)]
    enr = enrollments(settings, sid)[0]
    assert enr.next_part == 2 and enr.next_due_at == TUESDAY_9_LONDON + dt.timedelta(days=7)
    assert len(outbox_mails(settings)) == 1


def test_part_two_never_before_part_one(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, time_machine: TimeMachineFixture
) -> None:
    ship(settings, MONDAY)
    sid = add_person(settings, MONDAY, "UTC")
    # part 1 keeps failing temporarily for three weeks; it finally goes out on a Monday
    backend = Scripted(
        [RetryLater(TUESDAY_9_LONDON + dt.timedelta(days=7 * k + 6), "503") for k in range(3)]
        + [Accepted("m-1"), Accepted("m-2")]
    )
    _use(monkeypatch, backend)
    now = TUESDAY_9_LONDON
    while len([r for r in ledger(settings) if r[3] == SENT]) < 2:
        assert now < TUESDAY_9_LONDON + dt.timedelta(weeks=6)
        time_machine.move_to(now, tick=True)  # the provider's RetryLater is on this clock
        tick(settings, now)
        now += dt.timedelta(hours=1)
    rows = ledger(settings)
    assert [(r[2], r[3]) for r in rows] == [(1, SENT), (2, SENT)]
    sent = {r[2]: r[4] for r in rows}
    assert sent[1] is not None and sent[2] is not None and sent[1] < sent[2]
    assert sent[2] - sent[1] >= dt.timedelta(days=6)  # still a week apart
    assert enrollments(settings, sid)[0].next_part == 3


def test_paused_series_waits_and_resumes(settings: Settings) -> None:
    from newsletter.store.models import LIVE, PAUSED, Series

    ids = ship(settings, MONDAY)
    sid = add_person(settings, MONDAY, "UTC")
    myths = ids["myths-about-psychotherapy"]
    with session_scope(settings.database_url) as session:
        series = session.get(Series, myths)
        assert series is not None
        series.state = PAUSED
    assert tick(settings, TUESDAY_9_LONDON).sent == 0
    assert RedisQueue(settings).status(TUESDAY_9_LONDON).total == 0
    with session_scope(settings.database_url) as session:
        series = session.get(Series, myths)
        assert series is not None
        series.state = LIVE
    later = TUESDAY_9_LONDON + dt.timedelta(hours=1)
    report = reconcile(settings, later)  # the 5-minute sweep finds it overdue
    assert report.overdue_requeued == 1
    assert tick(settings, later).sent == 1
    assert enrollments(settings, sid)[0].next_part == 2
