"""waiting_queues: the database keeps each reader's waiting queue equal to a recount of their
queued places, after every kind of change to enrollments, on both databases."""

from __future__ import annotations

import datetime as dt
import random
import threading
from collections.abc import Callable

import pytest
from engine_support import (
    add_person,
    queues_kept,
    ship,
    utc,
    wait_for_a_lock_wait,
)
from scale_support import BATCH_MONDAY, add_readers
from sqlalchemy import delete, select, text, update
from sqlalchemy.orm import Session

from newsletter.core.config import Settings
from newsletter.engine import enrollment, series_queue
from newsletter.engine.tick import tick
from newsletter.services import preferences, roster, series_admin
from newsletter.store.db import session_scope
from newsletter.store.models import ENROLLED_ACTIVE, QUEUED, Enrollment, Subscriber

NOW = utc(2027, 1, 4, 12)  # Monday


def test_the_queue_follows_every_kind_of_change(settings: Settings) -> None:
    ids = ship(settings, NOW)
    cocreated = ids["co-created-process"]
    people = [add_person(settings, NOW, zone) for zone in ("Europe/London", "Asia/Tokyo")]
    waiting = queues_kept(settings.database_url)
    assert set(waiting) == set(people)  # Myths active, Co-Created waiting behind it
    assert all(text == f"{cocreated}:1:" for text in waiting.values())

    # a series queued with a start date: appended to every queue, the date in the text
    with session_scope(settings.database_url) as session:
        series_queue.queue_series(session, "co-created-process", dt.date(2027, 3, 1), NOW)
    queues_kept(settings.database_url)

    # the reader drops Co-Created (cancelled: nothing waits), then takes it back
    first = people[0]
    with session_scope(settings.database_url) as session:
        sub = session.get(Subscriber, first)
        assert sub is not None
        prefs = preferences.Preferences(["myths-about-psychotherapy"], timezone=sub.timezone)
        preferences.update_preferences(session, sub, prefs, NOW)
    assert first not in queues_kept(settings.database_url)
    with session_scope(settings.database_url) as session:
        sub = session.get(Subscriber, first)
        assert sub is not None
        both = ["myths-about-psychotherapy", "co-created-process"]
        preferences.update_preferences(session, sub, preferences.Preferences(both), NOW)
    assert first in queues_kept(settings.database_url)

    # Myths paused: its active places wait at their part, so every queue grows; then resumed
    series_admin.pause_series(settings, "myths-about-psychotherapy")
    queues_kept(settings.database_url)
    series_admin.resume_series(settings, "myths-about-psychotherapy", NOW)
    queues_kept(settings.database_url)

    # every Myths part sent: Co-Created starts, and the queues empty
    moment = NOW
    for _ in range(12):
        moment += dt.timedelta(days=7)
        tick(settings, moment)
    assert queues_kept(settings.database_url) == {}

    # a reader erased: their enrollments go, and with them any kept queue
    other = add_person(settings, moment, "America/New_York")
    assert other in queues_kept(settings.database_url)
    with session_scope(settings.database_url) as session:
        roster.erase_person(settings, session, other)
    assert other not in queues_kept(settings.database_url)


def test_random_writes_to_enrollments_keep_it_exact(settings: Settings) -> None:
    """Inserts, deletes and updates of every column the text holds, in random order and in
    bulk (one statement over many rows, as imports and `series queue` write): the kept queue
    equals the recount after each."""
    ids = ship(settings, NOW, queue=False)
    series = sorted(ids.values())
    people = [add_person(settings, NOW, slugs=[]) for _ in range(6)]
    rng = random.Random(20261207)
    states = (QUEUED, QUEUED, "active", "finished", "cancelled")
    sizes: list[int] = []
    for _ in range(60):
        with session_scope(settings.database_url) as session:
            rows = session.execute(select(Enrollment.id, Enrollment.subscriber_id)).all()
            kind = rng.choice(("insert", "delete", "update", "bulk") if rows else ("insert",))
            if kind == "insert":
                sid = rng.choice(people)
                taken = set(
                    session.scalars(
                        select(Enrollment.series_id).where(Enrollment.subscriber_id == sid)
                    )
                )
                free = [s for s in series if s not in taken]
                if free:
                    session.add(
                        Enrollment(
                            subscriber_id=sid, series_id=rng.choice(free),
                            position=rng.randint(0, 3), next_part=rng.randint(1, 4),
                            state=rng.choice(states), created_at=NOW, updated_at=NOW,
                        )
                    )  # fmt: skip
            elif kind == "delete":
                session.execute(delete(Enrollment).where(Enrollment.id == rng.choice(rows)[0]))
            elif kind == "update":
                eid = rng.choice(rows)[0]
                column = rng.choice(("state", "next_part", "not_before", "position", "due"))
                values = {
                    "state": {"state": rng.choice(states)},
                    "next_part": {"next_part": rng.randint(1, 5)},
                    "not_before": {"not_before": rng.choice((None, dt.date(2027, 2, 1)))},
                    "position": {"position": rng.randint(0, 3)},
                    "due": {"next_due_at": NOW + dt.timedelta(hours=rng.randint(1, 99))},
                }[column]
                session.execute(update(Enrollment).where(Enrollment.id == eid).values(**values))
            else:  # one statement over every row of a series
                session.execute(
                    update(Enrollment)
                    .where(Enrollment.series_id == rng.choice(series))
                    .values(state=rng.choice(states))
                )
        sizes.append(len(queues_kept(settings.database_url)))
    assert max(sizes) >= 2 and 0 in sizes  # queues were kept, grew and emptied again


def test_a_bulk_enrollment_keeps_every_new_readers_queue(settings: Settings) -> None:
    """Readers enrolled many at a time (an import's path: one INSERT for their queued places)."""
    ship(settings, NOW)
    people = [add_person(settings, NOW, slugs=[]) for _ in range(30)]
    with session_scope(settings.database_url) as session:
        enrollment.enroll_new(session, people, NOW)
    found = queues_kept(settings.database_url)
    assert set(people) <= set(found)


def holding_reader(settings: Settings, reader: int) -> Session:
    """An open transaction that holds the reader's row as a send's outcome transaction does
    (locked after the provider call, before the enrollments move); the caller commits it."""
    send = session_scope(settings.database_url).__enter__()
    send.execute(select(Subscriber.id).where(Subscriber.id == reader).with_for_update())
    return send


def meanwhile(settings: Settings, change: Callable[[Session], object]) -> Callable[[], list[str]]:
    """`change` in a transaction of its own, on a thread; returns a join that gives its errors
    (a deadlock: PostgreSQL aborted it)."""
    failures: list[str] = []

    def run() -> None:
        try:
            with session_scope(settings.database_url) as session:
                change(session)
        except Exception as exc:
            failures.append(repr(exc))

    thread = threading.Thread(target=run)
    thread.start()
    return lambda: (thread.join(), failures)[1]


def test_two_transactions_changing_one_readers_queue_write_it_in_turn(settings: Settings) -> None:
    """PostgreSQL, read committed: a transaction that changes a reader's queue while another's
    change to it is still open waits for it (the reader's row, locked by the trigger before it
    reads), then writes the queue from what the first committed. Without the lock the second
    read the queue before the first committed and wrote that over it."""
    if not settings.database_url.startswith("postgresql"):
        pytest.skip("row locks are PostgreSQL's; SQLite lets one writer at a time in anyway")
    ids = ship(settings, NOW)
    myths, cocreated = ids["myths-about-psychotherapy"], ids["co-created-process"]
    reader = add_person(settings, NOW)
    first = session_scope(settings.database_url).__enter__()
    first.execute(  # open, not committed: Co-Created's start moves
        update(Enrollment)
        .where(Enrollment.subscriber_id == reader, Enrollment.series_id == cocreated)
        .values(not_before=dt.date(2027, 2, 1))
    )

    join = meanwhile(  # Myths waits again too (its place back in the queue)
        settings,
        lambda session: session.execute(
            update(Enrollment)
            .where(Enrollment.subscriber_id == reader, Enrollment.series_id == myths)
            .values(state=QUEUED, next_due_at=None)
        ),
    )
    # commit the first once PostgreSQL shows the second waiting for it
    assert wait_for_a_lock_wait(settings.database_url), "the second never waited for the first"
    first.commit()
    first.close()
    assert join() == []
    found = queues_kept(settings.database_url)
    assert found[reader] == f"{myths}:1:;{cocreated}:1:2027-02-01"


def test_a_series_queued_again_while_a_send_holds_its_reader_waits_and_does_not_deadlock(
    settings: Settings,
) -> None:
    """PostgreSQL: a send records its outcomes holding its readers' rows, then moves their
    enrollments; a finished Myths makes Co-Created active. Co-Created queued again with a new
    start meanwhile changes that same place. It locks the readers first, as a send does
    (store.reader_locks), so it waits for the send and then reads afresh. Changing the place
    first (the waiting-queue trigger then wanting the reader's row the send holds, the send
    wanting the place) was a deadlock, and PostgreSQL aborted the therapist's change."""
    if not settings.database_url.startswith("postgresql"):
        pytest.skip("row locks are PostgreSQL's; SQLite lets one writer at a time in anyway")
    cocreated = ship(settings, NOW)["co-created-process"]
    reader = add_person(settings, NOW)
    send = holding_reader(settings, reader)
    join = meanwhile(
        settings,
        lambda s: series_queue.queue_series(s, "co-created-process", dt.date(2027, 3, 1), NOW),
    )
    assert wait_for_a_lock_wait(settings.database_url), "queueing never waited for the send"
    send.execute(  # the send's move: Myths finished, Co-Created active (not yet due)
        update(Enrollment)
        .where(Enrollment.subscriber_id == reader, Enrollment.series_id == cocreated)
        .values(state=ENROLLED_ACTIVE, next_due_at=NOW + dt.timedelta(days=30))
    )
    send.commit()
    send.close()
    assert join() == []
    with session_scope(settings.database_url) as session:
        row = session.scalars(
            select(Enrollment).where(
                Enrollment.subscriber_id == reader, Enrollment.series_id == cocreated
            )
        ).one()
        assert row.not_before == dt.date(2027, 3, 1)  # read after the send: the new start holds
    queues_kept(settings.database_url)


def test_a_reader_erased_while_a_send_holds_her_waits_and_does_not_deadlock(
    settings: Settings,
) -> None:
    """PostgreSQL: the erasure of a reader a send is recording (her Myths place about to move)
    waits for the send, then erases her. Deleting her places first (her queued Co-Created: the
    trigger wanting her row the send holds, the send wanting her Myths place) deadlocked."""
    if not settings.database_url.startswith("postgresql"):
        pytest.skip("row locks are PostgreSQL's; SQLite lets one writer at a time in anyway")
    myths = ship(settings, NOW)["myths-about-psychotherapy"]
    reader = add_person(settings, NOW)
    send = holding_reader(settings, reader)

    def erase(session: Session) -> None:
        person = session.get(Subscriber, reader)
        assert person is not None
        roster.erase(settings, session, person)

    join = meanwhile(settings, erase)
    assert wait_for_a_lock_wait(settings.database_url), "the erasure never waited for the send"
    send.execute(  # the send's move: Myths part 2 next
        update(Enrollment)
        .where(Enrollment.subscriber_id == reader, Enrollment.series_id == myths)
        .values(next_part=2, next_due_at=NOW + dt.timedelta(days=7))
    )
    send.commit()
    send.close()
    assert join() == []
    with session_scope(settings.database_url) as session:
        assert session.get(Subscriber, reader) is None
        assert (
            session.scalars(select(Enrollment).where(Enrollment.subscriber_id == reader)).all()
            == []
        )
    assert reader not in queues_kept(settings.database_url)


def test_the_trigger_reads_one_readers_places_whatever_the_statistics_say(
    settings: Settings,
) -> None:
    """PostgreSQL: a change to one reader's queued place makes the trigger read that reader's
    places only, through the reader's index. It finds them by the reader alone (the state is a
    FILTER). With `state = 'queued'` in its WHERE, on a table not analysed since it filled
    (here: 3,000 readers and two series queued in one go, as a new practice starts), the
    planner took the state index and read every reader's queued place on each call (2,200
    rows here); a series queued again for 20,000 readers took 28-49 s instead of 4. Counted,
    not timed: the rows this transaction fetched from enrollments by index (PostgreSQL's own
    counter)."""
    if not settings.database_url.startswith("postgresql"):
        pytest.skip("the planner's choice is PostgreSQL's")
    cocreated = ship(settings, BATCH_MONDAY, queue=False)["co-created-process"]
    add_readers(settings, BATCH_MONDAY, 3000)
    for slug in ("myths-about-psychotherapy", "co-created-process"):  # Co-Created waits
        series_admin.queue_series(settings, slug, None, BATCH_MONDAY)
    with session_scope(settings.database_url) as session:
        reader = session.scalars(
            select(Enrollment.subscriber_id)
            .where(Enrollment.series_id == cocreated, Enrollment.state == QUEUED)
            .limit(1)
        ).one()
    fetched = text("SELECT pg_stat_get_xact_tuples_fetched('enrollments'::regclass)")
    with session_scope(settings.database_url) as session:
        before = session.scalar(fetched)
        session.execute(
            update(Enrollment)
            .where(Enrollment.subscriber_id == reader, Enrollment.series_id == cocreated)
            .values(not_before=dt.date(2030, 4, 1))
        )
        read = session.scalar(fetched) - before
    assert read <= 6, f"{read} enrollment rows fetched to rewrite one reader's queue"
    assert queues_kept(settings.database_url)[reader].endswith(":2030-04-01")
