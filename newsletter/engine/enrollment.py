"""Bulk enrollment: many new readers enrolled at once in SQL, in every series or chosen ones.

Same rows as `schedule.enroll` called for each reader (DESIGN.md "Schedule semantics": every
live or paused series in queue order, the first live series with a part ACTIVE with part 1 at
the first slot strictly after `now` and on or after the series' start, the others QUEUED; each
row's columns from `schedule.opening`, as `enroll`'s), written set-based for imports and
benchmarks: the first slot depends only on the reader's (time zone, cadence, pause), so it is
computed in Python once per distinct group among the readers (a handful: imports have a few
zones, all weekly and unpaused), and the rows themselves are made by the database with two
`INSERT … SELECT` statements over `subscribers`, the ACTIVE rows' due time picked by a
`CASE` over those groups. No Python object per reader or per enrollment, so the cost per
batch is a constant number of statements whatever its size.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Sequence
from typing import Any, cast

from sqlalchemy import Date, DateTime, Integer, String, bindparam, text
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import BindParameter

from newsletter.core import schedule_rule as rule
from newsletter.engine.schedule import opening, part_counts, series_in_queue_order, times_of
from newsletter.store.json_list import json_list, select_json_list
from newsletter.store.models import (
    ACTIVE,
    ENROLLED_ACTIVE,
    LIVE,
    QUEUED,
    Enrollment,
    Series,
    UTCDateTime,
)

Group = tuple[str, str, dt.date | None]  # (time zone, cadence, paused_until)
_COLUMNS = (
    "subscriber_id, series_id, position, next_part, next_due_at, state, not_before,"
    " created_at, updated_at"
)


def enroll_new(session: Session, subscriber_ids: Sequence[int], now: dt.datetime) -> list[int]:
    """Bulk `enroll` (all live series) for confirmed subscribers who have no enrollments yet.

    Returns the ids of the ACTIVE enrollments written (mirror them into Redis)."""
    return [i for i, _ in enroll_new_due(session, subscriber_ids, now)]


def enroll_new_due(
    session: Session,
    subscriber_ids: Sequence[int],
    now: dt.datetime,
    series_slugs: Collection[str] | None = None,
) -> list[tuple[int, dt.datetime]]:
    """enroll_new, answering (enrollment id, due) of the ACTIVE rows: all Redis needs of people
    who had no enrollments (an import schedules them without reading them back).

    `series_slugs`: readers who all chose these series, as `enroll(series_slugs=…)` takes them
    (the chosen ones in queue order, positions from 1); None, every series.
    Readers among `subscriber_ids` who are not active are left alone, as `enroll` leaves them.
    Four statements whatever the number of readers: the distinct groups, the ACTIVE rows
    (RETURNING their ids and due times), the QUEUED rows, plus the series look-ups."""
    order = series_in_queue_order(session)
    if series_slugs is not None:
        order = [s for s in order if s.slug in series_slugs]
    if not order or not subscriber_ids:
        return []
    counts = part_counts(session)
    first = next((s for s in order if s.state == LIVE and counts.get(s.id, 0) >= 1), None)
    postgres = session.get_bind().dialect.name == "postgresql"
    among, ids = _among(postgres, subscriber_ids)
    shared: dict[str, Any] = {**ids, "active": ACTIVE, "now": now}
    now_type = bindparam("now", type_=UTCDateTime())
    due: list[tuple[int, dt.datetime]] = []
    if first is not None:
        new = opening(first, order.index(first) + 1, now)
        due = _insert_active(session, first, new, among, shared, now_type)
    queued = [opening(s, position, now) for position, s in enumerate(order, start=1)
              if s is not first]  # fmt: skip
    if queued:
        rows = ", ".join(
            f"(CAST(:se{i} AS integer), CAST(:po{i} AS integer), {_date(postgres, f'nb{i}')})"
            for i in range(len(queued))
        )
        params = dict(shared, state=QUEUED)
        binds: list[BindParameter[Any]] = [now_type]
        for i, new in enumerate(queued):
            params[f"se{i}"], params[f"po{i}"] = new["series_id"], new["position"]
            params[f"nb{i}"] = new["not_before"]
            binds.append(bindparam(f"nb{i}", type_=Date()))
        statement = text(
            f"INSERT INTO enrollments ({_COLUMNS})"
            " SELECT s.id, v.column1, v.column2, 1, NULL, :state, v.column3, :now, :now"
            f" FROM subscribers s CROSS JOIN (VALUES {rows}) AS v"
            f" WHERE {among} AND s.status = :active ORDER BY s.id, v.column2"
        ).bindparams(*binds)
        session.execute(statement, params)
    return due


def append_queued(
    session: Session, subscriber_ids: Sequence[int], series: Series, now: dt.datetime
) -> None:
    """`series` added at the end of each reader's queue (`schedule.opening`'s row, QUEUED at
    part 1, one position after their last place): one INSERT … SELECT for the batch, so the
    database's waiting-queue trigger runs once for it (an executemany is a statement a row
    on PostgreSQL). `schedule.place` decides afterwards whether it becomes active."""
    if not subscriber_ids:
        return
    postgres = session.get_bind().dialect.name == "postgresql"
    among, ids = _among(postgres, subscriber_ids)
    new = opening(series, 0, now)
    statement = text(
        f"INSERT INTO enrollments ({_COLUMNS})"
        f" SELECT s.id, CAST(:series AS integer), {after_last('s.id')}, :part, NULL, :state,"
        f" {_date(postgres, 'not_before')}, :now, :now FROM subscribers s WHERE {among}"
        " ORDER BY s.id"
    ).bindparams(bindparam("now", type_=UTCDateTime()), bindparam("not_before", type_=Date()))
    params = dict(ids, series=new["series_id"], part=new["next_part"], state=new["state"],
                  not_before=new["not_before"], now=now)  # fmt: skip
    session.execute(statement, params)


def after_last(reader: str) -> str:
    """SQL for the queue position one after the reader's last place (1 when they have none):
    where a series they are given or given back goes. `reader` names them (a column). One
    statement of the rule for the set-based writers; `schedule.enroll` counts on from the rows
    it has read for one reader."""
    return (
        "coalesce((SELECT max(mine.position) FROM enrollments mine"
        f" WHERE mine.subscriber_id = {reader}), 0) + 1"
    )


def reopen(session: Session, enrollment_ids: Sequence[int], now: dt.datetime) -> None:
    """Finished places given back (a part was added to their series): QUEUED at their next
    part, nothing due, at the end of each reader's queue (`after_last`), in one UPDATE; at most
    one place a reader. `schedule.place` decides afterwards whether one becomes active."""
    if not enrollment_ids:
        return
    statement = text(
        "UPDATE enrollments SET state = :state, next_due_at = NULL,"
        f" position = {after_last('enrollments.subscriber_id')}, updated_at = :now"
        " WHERE id IN :ids"
    ).bindparams(bindparam("ids", expanding=True), bindparam("now", type_=UTCDateTime()))
    session.execute(statement, {"ids": list(enrollment_ids), "state": QUEUED, "now": now})
    wanted = set(enrollment_ids)
    for row in list(session.identity_map.values()):  # rows read before: read again on use
        if isinstance(row, Enrollment) and row.id in wanted:
            session.expire(row)


def _date(postgres: bool, name: str) -> str:
    """The date parameter `name` in a VALUES row: PostgreSQL types it there (else text, which
    a date column refuses); SQLite must not (CAST AS date is numeric there: '2027-03-22' -> 2027)."""
    return f"CAST(:{name} AS date)" if postgres else f":{name}"


def _among(postgres: bool, subscriber_ids: Sequence[int]) -> tuple[str, dict[str, Any]]:
    """`s.id` among the ids, and the parameters: the ids as one JSON list (store.json_list),
    plus their range. The range is what keeps the cost per batch flat as the table grows:
    without it PostgreSQL, which knows the batch holds thousands of ids, hashes them and scans
    every active reader (a plan that grows with the list: 25 -> 50 ms a batch from 30k to 100k
    readers); with it, only the batch's part of the primary key is read. (A filter
    `s.id = ANY(array)` was worse: every active reader compared with the whole array, 0.45 s a
    batch at 10,000 readers.)"""
    ids = [int(i) for i in subscriber_ids]
    params = {"ids": json_list(ids), "lo": min(ids), "hi": max(ids)}
    pick = select_json_list(postgres, "ids", "integer")
    return f"s.id BETWEEN :lo AND :hi AND s.id IN ({pick})", params


def _insert_active(
    session: Session,
    first: Series,
    new: dict[str, Any],
    among: str,
    shared: dict[str, Any],
    now_type: BindParameter[Any],
) -> list[tuple[int, dt.datetime]]:
    """The first series' rows (`new`: schedule.opening's columns), ACTIVE at each group's
    first slot on or after the series' start; (id, due) of each."""
    groups = session.execute(
        text(
            f"SELECT DISTINCT s.timezone, s.cadence, s.paused_until FROM subscribers s"
            f" WHERE {among} AND s.status = :active"
        ).columns(timezone=String, cadence=String, paused_until=Date),
        shared,
    ).all()
    if not groups:
        return []
    whens: list[str] = []
    binds: list[BindParameter[Any]] = [now_type, bindparam("not_before", type_=Date())]
    params = dict(shared, series=new["series_id"], position=new["position"], state=ENROLLED_ACTIVE,
                  not_before=new["not_before"])  # fmt: skip
    for i, (zone, cadence, paused) in enumerate(groups):
        params[f"z{i}"], params[f"c{i}"] = zone, cadence
        params[f"d{i}"] = _first_slot((zone, cadence, paused), first, new, shared["now"])
        binds.append(bindparam(f"d{i}", type_=UTCDateTime()))
        pause = "s.paused_until IS NULL"
        if paused is not None:
            pause = f"s.paused_until = :p{i}"
            params[f"p{i}"] = paused
            binds.append(bindparam(f"p{i}", type_=Date()))
        whens.append(f"WHEN s.timezone = :z{i} AND s.cadence = :c{i} AND {pause} THEN :d{i}")
    postgres = session.get_bind().dialect.name == "postgresql"
    statement = (
        text(
            f"INSERT INTO enrollments ({_COLUMNS})"
            f" SELECT s.id, CAST(:series AS integer), CAST(:position AS integer), 1,"
            f" CASE {' '.join(whens)} END, :state, {_date(postgres, 'not_before')}, :now, :now"
            f" FROM subscribers s WHERE {among} AND s.status = :active ORDER BY s.id"
            " RETURNING id, next_due_at"
        )
        .bindparams(*binds)
        .columns(id=Integer)
    )
    # next_due_at as the driver hands it back, turned into an aware datetime once per distinct
    # value (a few), not once per row
    dialect = session.get_bind().dialect
    parse = DateTime().dialect_impl(dialect).result_processor(dialect, None)

    def process(raw: Any) -> dt.datetime:  # what UTCDateTime reads back: aware UTC
        return rule.aware(cast(dt.datetime, raw if parse is None else parse(raw)))

    due_of: dict[Any, dt.datetime] = {}
    written: list[tuple[int, dt.datetime]] = []
    for enrollment_id, raw in session.execute(statement, params).all():
        if raw is None:
            continue
        due = due_of.get(raw)
        if due is None:
            due = due_of[raw] = process(raw)
        written.append((enrollment_id, due))
    return written


def _first_slot(group: Group, series: Series, new: dict[str, Any], now: dt.datetime) -> dt.datetime:
    """Part 1's slot for a reader of this (zone, cadence, pause) with nothing sent yet."""
    zone, cadence, paused = group
    reader = rule.Reader(zone, cadence, paused)
    return rule.slot_after(reader, times_of(series), now, None, new["not_before"])
