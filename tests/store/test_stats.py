"""Dashboard and series-page counts: the same numbers as reading every row, from indexed
queries (EXPLAIN shows the index, not a pass over the ledger)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any
from zoneinfo import ZoneInfo

from engine_support import ship, utc
from scale_support import add_readers
from sqlalchemy import event, select
from sqlalchemy.orm import Session

from newsletter.core.config import Settings
from newsletter.store import stats
from newsletter.store.db import get_engine, session_scope
from newsletter.store.models import (
    ACTIVE,
    ENROLLED_ACTIVE,
    Enrollment,
    Part,
    Series,
    Subscriber,
)

NOW = utc(2027, 1, 4, 12)  # Monday


def _week_by_reading_every_row(session: Session, now: dt.datetime, zone: str) -> list[Any]:
    """The dashboard's week as it was computed before issue 15: every due enrollment read."""
    tz = ZoneInfo(zone)
    today = now.astimezone(tz).date()
    start = dt.datetime.combine(today, dt.time(0), tz).astimezone(dt.UTC)
    end = dt.datetime.combine(today + dt.timedelta(days=7), dt.time(0), tz)
    out: dict[tuple[dt.date, str, int], list[Any]] = {}
    for e, sub, s in session.execute(
        select(Enrollment, Subscriber, Series)
        .join(Subscriber, Subscriber.id == Enrollment.subscriber_id)
        .join(Series, Series.id == Enrollment.series_id)
    ):
        due = e.next_due_at
        if e.state != ENROLLED_ACTIVE or due is None or due >= end or sub.status != ACTIVE:
            continue
        if sub.paused_until is not None and sub.paused_until > today:
            continue
        title = session.scalar(
            select(Part.title).where(Part.series_id == s.id, Part.number == e.next_part)
        )
        key = (max(due, start).astimezone(tz).date(), s.slug, e.next_part)
        acc = out.setdefault(key, [title or f"Part {e.next_part}", 0, due])
        acc[1] += 1
        acc[2] = min(acc[2], due)
    return sorted((k, tuple(v)) for k, v in out.items())


def test_the_week_ahead_counts_what_reading_every_row_counts(settings: Settings) -> None:
    ship(settings, NOW)
    add_readers(settings, NOW, 60)
    with session_scope(settings.database_url) as session:
        for zone in ("America/New_York", "Asia/Tokyo"):
            week = stats.week_ahead(session, NOW, zone)
            got = sorted(
                ((d.date, c.series_slug, c.part_number), (c.part_title, c.count, c.first_at))
                for d in week
                for c in d.cohorts
            )
            expected = _week_by_reading_every_row(session, NOW, zone)
            assert got == expected and sum(c[1][1] for c in got) > 30


def test_queue_counts_agree_with_the_per_series_queries(settings: Settings) -> None:
    ship(settings, NOW)
    add_readers(settings, NOW, 40)
    with session_scope(settings.database_url) as session:
        counts = stats.queue_counts(session)
        assert counts.waiting == stats.part_counts(session)
        assert counts.upcoming == stats.next_by_series(session)
        active = stats.active_by_choice(session)
        for s in session.scalars(select(Series)):
            for takes in (True, False):
                outside = sum(
                    1
                    for sub in session.scalars(
                        select(Subscriber).where(
                            Subscriber.status == ACTIVE, Subscriber.takes_new_series.is_(takes)
                        )
                    )
                    if session.scalar(
                        select(Enrollment.id).where(
                            Enrollment.subscriber_id == sub.id, Enrollment.series_id == s.id
                        )
                    )
                    is None
                )
                enrolled = counts.enrolled.get((s.id, takes), 0)
                assert active.get(takes, 0) - enrolled == outside
        sent = stats.sent_counts(session)
        ids = [s.id for s in session.scalars(select(Series).limit(1))]
        assert stats.sent_counts(session, ids) == {k: v for k, v in sent.items() if k[0] in ids}
        assert stats.sent_counts(session, []) == {}


def _plans(settings: Settings, run: Callable[[Session], object], marker: str) -> str:
    """The plan of the statement `run` issues that contains `marker` (EXPLAIN QUERY PLAN on
    SQLite; EXPLAIN with sequential scans priced out on PostgreSQL, so a usable index shows
    even on a tiny table)."""
    engine = get_engine(settings.database_url)
    caught: list[tuple[str, Any]] = []

    def catch(_c: Any, _cur: Any, statement: str, params: Any, *_a: Any) -> None:
        if marker in statement:
            caught.append((statement, params))

    event.listen(engine, "before_cursor_execute", catch)
    try:
        with session_scope(settings.database_url) as session:
            run(session)
    finally:
        event.remove(engine, "before_cursor_execute", catch)
    assert caught, marker
    statement, params = caught[0]
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            rows = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, params).all()
            return "\n".join(str(r[3]) for r in rows)
        conn.exec_driver_sql("SET enable_seqscan = off")
        rows = conn.exec_driver_sql("EXPLAIN " + statement, params).all()
        return "\n".join(str(r[0]) for r in rows)


def _uses(plan: str, index: str, table: str, dialect: str) -> bool:
    if dialect == "sqlite":
        return index in plan
    return f"Seq Scan on {table}" not in plan


def test_the_hot_admin_queries_use_their_indexes(settings: Settings) -> None:
    ship(settings, NOW)
    add_readers(settings, NOW, 30)
    dialect = get_engine(settings.database_url).dialect.name
    with session_scope(settings.database_url) as session:
        shown = [s.id for s in session.scalars(select(Series))]
    checks = [
        # dashboard: sent in the last 7 days is a range of the ledger, not all of it
        (
            lambda s: stats.last_days(s, NOW),
            "sent_at >=",
            "ix_deliveries_status_sent",
            "deliveries",
        ),
        (
            lambda s: stats.last_days(s, NOW),
            "count(distinct(provider_events.delivery_id))",
            "ix_provider_events_type_occurred",
            "provider_events",
        ),
        (
            lambda s: stats.status_counts(s, NOW),
            "paused_until >",
            "ix_subscribers_status_paused",
            "subscribers",
        ),
        # series page: sent per part of the series shown
        (
            lambda s: stats.sent_counts(s, shown),
            "deliveries.part_number",
            "ix_deliveries_series_part_status",
            "deliveries",
        ),
    ]
    for run, marker, index, table in checks:
        plan = _plans(settings, run, marker)
        assert _uses(plan, index, table, dialect), (marker, plan)


def test_the_reads_of_rows_not_sent_use_the_status_index_that_leaves_sent_rows_out(
    settings: Settings,
) -> None:
    """ix_deliveries_status_updated holds only rows not sent on PostgreSQL (migration 0019):
    each read of claimed, retry or failed rows must still be an index range on it (the planner
    proves `status = 'claimed'` or `status IN ('failed', 'retry')` implies `status <> 'sent'`;
    a rewrite it can't prove, such as a function around status, would read the whole ledger).
    On SQLite the status indexes are full: any of them, not a pass over the table."""
    from newsletter.store import ledger

    ship(settings, NOW)
    add_readers(settings, NOW, 30)
    since = NOW - dt.timedelta(days=7)
    checks = [
        (lambda s: ledger.handed_before(s, NOW), "deliveries.updated_at <"),
        (lambda s: ledger.requeue_lost(s, NOW, NOW), "deliveries.retry_at <"),
        (lambda s: ledger.failures_since(s, since, ("bounce",)), "ORDER BY deliveries.updated_at"),
        (lambda s: ledger.outcomes_since(s, since), "deliveries.updated_at >="),
        (lambda s: ledger.first_handed_between(s, since, NOW), "deliveries.updated_at >"),
    ]
    postgres = get_engine(settings.database_url).dialect.name == "postgresql"
    for run, marker in checks:
        plan = _plans(settings, run, marker)
        # SQLite's two status indexes are full and both start with status: either will do
        wanted = "ix_deliveries_status_updated" if postgres else "INDEX ix_deliveries_status_"
        assert wanted in plan, (marker, plan)
    sent = _plans(settings, lambda s: ledger.first_handed_between(s, since, NOW), "sent_at >")
    wanted = "ix_deliveries_sent_at" if postgres else "ix_deliveries_status_sent"
    assert wanted in sent, sent


def test_the_paused_count_is_each_readers_own_calendar(settings: Settings) -> None:
    # Near midnight UTC the readers' dates differ from UTC's: a pause until 5 January has ended
    # in Auckland at 23:30 UTC on the 4th (12:30 on the 5th there) and still holds in Honolulu
    # at 00:30 UTC on the 5th (14:30 on the 4th there). The dashboard counts what the person
    # page says (services.calendar.pause_running, the schedule rule); by UTC's date it was 4, 2.
    from engine_support import add_person

    from newsletter.services import calendar

    ship(settings, NOW)
    jan = dt.date(2027, 1, 1)
    for zone, day in [
        ("Pacific/Auckland", 5),
        ("Pacific/Honolulu", 5),
        ("Pacific/Auckland", 6),
        ("Pacific/Honolulu", 4),
        ("Europe/London", 10),
        ("Europe/London", 1),
    ]:
        add_person(settings, NOW, zone, paused_until=jan.replace(day=day))
    for now, paused in [(utc(2027, 1, 4, 23, 30), 3), (utc(2027, 1, 5, 0, 30), 3)]:
        with session_scope(settings.database_url) as session:
            people = list(session.scalars(select(Subscriber)))
            shown = sum(calendar.pause_running(p, now) for p in people)
            counts = stats.status_counts(session, now)
        assert counts["paused"] == shown == paused
        assert counts["active"] == len(people) - paused
