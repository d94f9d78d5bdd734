"""Bulk enrollment (engine.enrollment): the same rows, field by field, as `schedule.enroll` for
each reader, in a constant number of statements."""

from __future__ import annotations

import datetime as dt
import secrets

from engine_support import enrollment_facts, ship, utc
from sqlalchemy import event, func, select, update

from newsletter.core.config import Settings
from newsletter.engine import enrollment, schedule
from newsletter.store.db import get_engine, session_scope
from newsletter.store.models import (
    ACTIVE,
    FORTNIGHTLY,
    PAUSED,
    PENDING,
    WEEKLY,
    Enrollment,
    Series,
    Subscriber,
)

NOW = utc(2027, 3, 3, 9, 17)
READERS = [  # (zone, cadence, paused_until, status)
    ("Europe/London", WEEKLY, None, ACTIVE),
    ("America/New_York", FORTNIGHTLY, None, ACTIVE),
    ("Asia/Tokyo", WEEKLY, dt.date(2027, 4, 20), ACTIVE),
    ("Pacific/Auckland", WEEKLY, None, ACTIVE),
    ("Europe/London", WEEKLY, None, ACTIVE),
    ("UTC", FORTNIGHTLY, dt.date(2027, 3, 5), ACTIVE),
    ("Europe/Berlin", WEEKLY, None, PENDING),  # not confirmed: enrolled by neither
]


def _readers(settings: Settings) -> list[int]:
    with session_scope(settings.database_url) as session:
        subs = [
            Subscriber(
                public_id=secrets.token_hex(8),
                email=f"e{i}-{secrets.token_hex(4)}@example.org",
                email_key=f"e{i}-{secrets.token_hex(4)}@example.org",
                timezone=zone,
                status=status,
                cadence=cadence,
                paused_until=paused,
                created_at=NOW,
                updated_at=NOW,
            )
            for i, (zone, cadence, paused, status) in enumerate(READERS)
        ]
        session.add_all(subs)
        session.flush()
        return [s.id for s in subs]


def _rows(settings: Settings, ids: list[int]) -> list[list[tuple[object, ...]]]:
    """Every column but the ids and `updated_at`, per reader in the order given, per position.

    (`enroll` writes a row and then updates it, so the column's onupdate stamps the wall clock
    on its ACTIVE row; the bulk path writes `now` in both, as it always did: checked apart.)"""
    with session_scope(settings.database_url) as session:
        found = session.scalars(select(Enrollment).order_by(Enrollment.position))
        by_reader: dict[int, list[tuple[object, ...]]] = {i: [] for i in ids}
        for e in found:
            if e.subscriber_id in by_reader:
                by_reader[e.subscriber_id].append(enrollment_facts(e))
    return [by_reader[i] for i in ids]


def _compare(
    settings: Settings, chosen: list[str] | None = None
) -> tuple[list[list[tuple[object, ...]]], list[int]]:
    one_by_one, bulk = _readers(settings), _readers(settings)
    with session_scope(settings.database_url) as session:
        for sid in one_by_one:
            sub = session.get(Subscriber, sid)
            assert sub is not None
            if sub.status == ACTIVE:
                schedule.enroll(session, sub, NOW, series_slugs=chosen)
    with session_scope(settings.database_url) as session:
        due = enrollment.enroll_new_due(session, bulk, NOW, chosen)
    expected = _rows(settings, one_by_one)
    assert _rows(settings, bulk) == expected
    with session_scope(settings.database_url) as session:
        written = dict(
            session.execute(
                select(Enrollment.id, Enrollment.next_due_at).where(
                    Enrollment.subscriber_id.in_(bulk), Enrollment.state == "active"
                )
            ).all()
        )
    assert dict(due) == written
    with session_scope(settings.database_url) as session:  # the same stored text, not just time
        if session.get_bind().dialect.name == "sqlite":
            listed = ",".join(map(str, bulk))
            texts = session.connection().exec_driver_sql(
                f"SELECT subscriber_id IN ({listed}), next_due_at, created_at FROM enrollments"
            )
            forms = {(b, len(d or ""), len(c)) for b, d, c in texts if d is not None}
            assert {f[1:] for f in forms if f[0]} == {f[1:] for f in forms if not f[0]}
    with session_scope(settings.database_url) as session:
        stamps = set(
            session.scalars(select(Enrollment.updated_at).where(Enrollment.subscriber_id.in_(bulk)))
        )
    assert stamps == {NOW}
    return expected, [i for i, _ in due]


def test_bulk_rows_equal_enroll_one_by_one(settings: Settings) -> None:
    ship(settings, NOW)
    expected, due = _compare(settings)
    active = [r for rows in expected for r in rows if r[4] == "active"]
    assert len(due) == 6 and len(active) == 6  # every confirmed reader has one part due
    assert len({r[3] for r in active}) >= 4  # the zones, cadences and pauses give many slots
    assert expected[-1] == []  # the pending reader


def test_a_paused_first_series_waits_queued_and_the_next_live_one_starts(
    settings: Settings,
) -> None:
    ids = ship(settings, NOW)
    with session_scope(settings.database_url) as session:
        first = session.scalars(select(Series).order_by(Series.order)).first()
        assert first is not None
        session.execute(update(Series).where(Series.id == first.id).values(state=PAUSED))
    expected, due = _compare(settings)
    assert expected[0][0][0] == first.id and expected[0][0][4] == "queued"
    assert expected[0][1][4] == "active" and len(due) == 6 and len(ids) >= 2


def _queue(settings: Settings) -> list[str]:
    with session_scope(settings.database_url) as session:
        return [s.slug for s in schedule.series_in_queue_order(session)]


def test_readers_who_chose_some_series_get_the_same_rows_both_ways(settings: Settings) -> None:
    """An import's readers who chose series: only those, in queue order, positions from 1; the
    first live one ACTIVE (here the second in the queue, as the first was not chosen)."""
    ids = ship(settings, NOW)
    second = _queue(settings)[1]
    expected, due = _compare(settings, [second, "no-such-series"])
    assert len(due) == 6 and all(len(rows) == 1 for rows in expected[:-1])
    assert {rows[0][:2] for rows in expected[:-1]} == {(ids[second], 1)}  # (series, position)
    assert {rows[0][4] for rows in expected[:-1]} == {"active"}


def test_readers_who_chose_only_a_paused_series_wait_queued_both_ways(settings: Settings) -> None:
    ids = ship(settings, NOW)
    first = _queue(settings)[0]
    with session_scope(settings.database_url) as session:
        session.execute(update(Series).where(Series.id == ids[first]).values(state=PAUSED))
    expected, due = _compare(settings, [first])
    assert due == [] and {rows[0][4] for rows in expected[:-1]} == {"queued"}


def test_both_ways_give_every_row_its_series_start(settings: Settings) -> None:
    """A series queued with a start gives it to readers who come later, by either way: the ACTIVE
    row's part 1 and the QUEUED row's not_before (schedule.opening)."""
    ship(settings, NOW)
    starts = {
        "myths-about-psychotherapy": dt.date(2027, 3, 24),
        "co-created-process": dt.date(2027, 4, 7),
    }
    with session_scope(settings.database_url) as session:
        for row in session.scalars(select(Series)):
            row.starts_on = starts[row.slug]
        first = {row.id: row.starts_on for row in session.scalars(select(Series))}
    expected, due = _compare(settings)
    active = [r for rows in expected for r in rows if r[4] == "active"]
    assert len(due) == 6 and all(r[5] == dt.date(2027, 3, 24) for r in active)
    assert all(r[3] >= utc(2027, 3, 24, 0) - dt.timedelta(hours=14) for r in active)
    assert all(r[5] == first[r[0]] for rows in expected for r in rows)


def test_bulk_enrollment_is_a_constant_number_of_statements(settings: Settings) -> None:
    ship(settings, NOW)
    statements: list[str] = []

    def count(conn: object, cursor: object, sql: str, *args: object) -> None:
        statements.append(sql)

    def statements_for(n: int) -> int:
        ids = [_readers(settings) for _ in range(n)]
        statements.clear()
        engine = get_engine(settings.database_url)
        event.listen(engine, "before_cursor_execute", count)
        try:
            with session_scope(settings.database_url) as session:
                enrollment.enroll_new(session, [i for group in ids for i in group], NOW)
        finally:
            event.remove(engine, "before_cursor_execute", count)
        return len(statements)

    assert statements_for(1) == statements_for(5) <= 6, statements


def test_only_the_readers_listed_are_enrolled_not_others_within_their_range(
    settings: Settings,
) -> None:
    """The ids come with their range (so that PostgreSQL reads only that part of the primary
    key): active readers inside the range but not in the list are left alone."""
    ship(settings, NOW)
    ids = _readers(settings)
    active = [i for i, reader in zip(ids, READERS, strict=True) if reader[3] == ACTIVE]
    chosen = [active[0], active[2], active[-1]]
    skipped = [i for i in active if i not in chosen]
    assert min(chosen) < min(skipped) and max(skipped) < max(chosen)  # inside the range
    with session_scope(settings.database_url) as session:
        due = enrollment.enroll_new_due(session, list(reversed(chosen)), NOW)
    with session_scope(settings.database_url) as session:
        enrolled = set(session.scalars(select(Enrollment.subscriber_id)))
        rows = session.scalar(select(func.count()).select_from(Enrollment))
        series = session.scalar(select(func.count()).select_from(Series))
    assert enrolled == set(chosen) and rows == len(chosen) * (series or 0)
    assert len(due) == len(chosen)
