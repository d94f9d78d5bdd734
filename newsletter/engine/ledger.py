"""The ledger's SQL: the set-based statements that move delivery rows between states.

Ledger states (one row per subscriber, series and part; the unique constraint decides):
- claimed, retry_at set   : row written, provider not called yet (retry_at = claim time).
- claimed, retry_at NULL  : handed to the provider (compare-and-set, committed before the call);
                            outcome unknown until recorded; `reconcile` settles it.
- sent                    : accepted; enrollment advanced in the same transaction.
- retry                   : due again at retry_at (rate limit, 5xx, render error, halt).
- failed                  : permanent for this address; the enrollment moves on.
Every statement here names its rows by id or by (subscriber, series, part) and does one thing;
PostgreSQL gets array parameters (unnest / ANY) where SQLite gets IN lists and executemany.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

from sqlalchemy import any_, bindparam, func, text, true, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session

from newsletter.store.models import (
    CLAIMED,
    RETRY,
    SENT,
    Delivery,
    Enrollment,
    Subscriber,
    UTCDateTime,
    utcnow,
)

# On a row reconcile resent (its first hand-over's outcome stayed unknown): kept once it is sent,
# so the ledger says why that reader may have had the part twice.
RESENT_NOTE = "outcome unknown after a crash; sent again"

Move = tuple[int, int, dt.datetime | None]  # (enrollment id, next part, due or None)
QueueChange = tuple[int, dt.datetime | None]  # (enrollment id, due or None to remove)


# --- rows as plain columns ---------------------------------------------------------------------

# Only the columns dispatch and schedule read (anything else still loads on access): a burst
# loads thousands of rows per round, and every skipped datetime column saves a conversion.
LEDGER_COLUMNS = (
    Delivery.id,
    Delivery.status,
    Delivery.retry_at,
    Delivery.part_number,
    Delivery.scheduled_for,
)
PERSON_COLUMNS = (
    Subscriber.id,
    Subscriber.public_id,
    Subscriber.email,
    Subscriber.name,
    Subscriber.status,
    Subscriber.timezone,
    Subscriber.cadence,
    Subscriber.paused_until,
)
PLACE_COLUMNS = (
    Enrollment.id,
    Enrollment.state,
    Enrollment.next_part,
    Enrollment.not_before,
    Enrollment.next_due_at,
)


@dataclass(slots=True)
class LedgerRow:
    """The ledger columns send_chunk reads (in LEDGER_COLUMNS order)."""

    id: int
    status: str
    retry_at: dt.datetime | None
    part_number: int
    scheduled_for: dt.datetime


@dataclass(slots=True)
class PersonRow:
    """The subscriber columns send_chunk reads (in PERSON_COLUMNS order)."""

    id: int
    public_id: str
    email: str
    name: str | None
    status: str
    timezone: str
    cadence: str
    paused_until: dt.date | None


@dataclass(slots=True)
class PlaceRow:
    """The enrollment columns send_chunk reads (in PLACE_COLUMNS order). Writes go through
    bulk UPDATEs; the ORM object is loaded only where schedule.advance needs one (a series'
    last part), so a chunk builds no 1,000 ORM objects."""

    id: int
    state: str
    next_part: int
    not_before: dt.date | None
    next_due_at: dt.datetime | None


def split_row(row: Any) -> tuple[LedgerRow, PersonRow, PlaceRow]:
    """A send_chunk result row -> (ledger, subscriber and enrollment columns)."""
    return LedgerRow(*row[:5]), PersonRow(*row[5:13]), PlaceRow(*row[13:])


class Claim(NamedTuple):
    """An enrollment that is due: its id and the slot its ledger row is for."""

    id: int
    next_due_at: dt.datetime | None


# --- conditions ----------------------------------------------------------------------------------


def naive_utc(value: dt.datetime) -> dt.datetime:
    return value.astimezone(dt.UTC).replace(tzinfo=None)  # as UTCDateTime stores it


def sqlite_stored(session: Session) -> Callable[[dt.datetime | None], Any]:
    """A UTC datetime as SQLite stores it (UTCDateTime's own bind processor, each distinct value
    converted once), for the raw executemany of the hot SQLite writes: through SQLAlchemy each
    row's parameters were built and each datetime converted again, 9 per reader sent."""
    dialect = session.get_bind().dialect
    process = UTCDateTime().dialect_impl(dialect).bind_processor(dialect)
    assert process is not None
    seen: dict[dt.datetime, Any] = {}

    def stored(value: dt.datetime | None) -> Any:
        if value is None:
            return None
        text_value = seen.get(value)
        if text_value is None:
            text_value = seen[value] = process(value)
        return text_value

    return stored


def sqlite_executemany(session: Session, sql: str, rows: list[tuple[Any, ...]]) -> None:
    """One executemany straight to the driver, after the session's pending changes (as
    session.execute would flush them first)."""
    session.flush()
    session.connection().exec_driver_sql(sql, rows)


def id_range(ids: list[int]) -> Any:
    """A redundant `id BETWEEN min AND max` next to `id IN (…)`: a chunk's ledger ids come from
    one INSERT, so they are nearly consecutive, and with the range PostgreSQL reads them with a
    primary-key range scan instead of judging 1,000 separate probes dearer than a full scan
    (it did so at 100,000 rows)."""
    return Delivery.id.between(min(ids), max(ids)) if ids else true()


def among(session: Session, column: Any, values: Any) -> Any:
    """`column IN (values)`; on PostgreSQL `column = ANY(:array)`, one parameter instead of
    1,000, so neither SQLAlchemy (post-compile) nor psycopg (query parsing) renders and parses
    1,000 placeholders per statement: that was a fifth of send_chunk's CPU."""
    values = list(values)
    if session.get_bind().dialect.name == "postgresql":
        return column == any_(bindparam(None, values, type_=ARRAY(column.type)))
    return column.in_(values)


def status_is(status: str) -> Any:
    """`Delivery.status == status` that the planner can't answer from the status index.

    For statements that already name their rows by id: mid-burst the ledger holds up to N
    `claimed` rows while the statistics (gathered before the burst) say they are rare, and
    PostgreSQL then scanned ix_deliveries_status_updated (every claimed row) instead of the
    primary key for each chunk: 3+ s per chunk at N = 1,000,000.
    """
    return func.coalesce(Delivery.status, "") == status


# --- new -> claimed; retry -> claimed -----------------------------------------------------------

_PG_TAKE_BACK = text(
    "UPDATE deliveries SET status = :claimed, retry_at = :now, updated_at = :now"
    " FROM unnest(CAST(:s AS integer[]), CAST(:se AS integer[]), CAST(:p AS integer[]))"
    " AS t(s, se, p)"
    " WHERE deliveries.subscriber_id = t.s AND deliveries.series_id = t.se"
    " AND deliveries.part_number = t.p AND deliveries.status = :retry"
    " AND (deliveries.retry_at IS NULL OR deliveries.retry_at <= :now)"
    " RETURNING deliveries.id, deliveries.subscriber_id, deliveries.series_id,"
    " deliveries.part_number, deliveries.crashes"
)

_PG_CLAIMS = text(
    "INSERT INTO deliveries (subscriber_id, series_id, part_number, status, scheduled_for,"
    " attempts, retry_at, created_at, updated_at)"
    " SELECT t.s, t.se, t.p, :status, t.d, 0, :now, :now, :now"
    " FROM unnest(CAST(:s AS integer[]), CAST(:se AS integer[]), CAST(:p AS integer[]),"
    " CAST(:d AS timestamp[])) AS t(s, se, p, d)"
    " ON CONFLICT (subscriber_id, series_id, part_number) DO NOTHING"
    " RETURNING id, subscriber_id, series_id, part_number"
)


def take_back_retries(
    session: Session, wanted: dict[tuple[int, int, int], Claim], now: dt.datetime
) -> dict[tuple[int, int, int], tuple[int, int]]:
    """PostgreSQL: retry rows of these keys whose time has come -> claimed, by compare-and-set
    matched on the exact (subscriber, series, part) triples; {key: (delivery id, crashes)}."""
    keys = list(wanted)
    rows = session.execute(
        _PG_TAKE_BACK,
        {
            "s": [k[0] for k in keys],
            "se": [k[1] for k in keys],
            "p": [k[2] for k in keys],
            "claimed": CLAIMED,
            "retry": RETRY,
            "now": naive_utc(now),
        },
    ).all()
    return {(s, se, p): (i, crashes) for i, s, se, p, crashes in rows}


SQLITE_ROWS = 1000
_SQLITE_CLAIMS = (
    "INSERT INTO deliveries (subscriber_id, series_id, part_number, status, scheduled_for,"
    " attempts, retry_at, created_at, updated_at) VALUES {rows}"
    " ON CONFLICT (subscriber_id, series_id, part_number) DO NOTHING"
    " RETURNING id, subscriber_id, series_id, part_number"
)


def insert_claims(
    session: Session, wanted: dict[tuple[int, int, int], Claim], now: dt.datetime
) -> dict[tuple[int, int, int], int]:
    """INSERT … ON CONFLICT DO NOTHING one claimed ledger row per key; {key: new delivery id}.

    PostgreSQL: one small statement with array parameters (unnest), so neither SQLAlchemy nor
    psycopg builds and parses a 9,000-parameter query each round. SQLite: one multi-row INSERT
    of plain values per 1,000 rows, straight to the driver (through SQLAlchemy each row's
    parameters were built and its four datetimes converted). A conflict (row already there)
    returns nothing.
    """
    if session.get_bind().dialect.name == "postgresql":
        keys = list(wanted)
        params = {
            "s": [k[0] for k in keys],
            "se": [k[1] for k in keys],
            "p": [k[2] for k in keys],
            "d": [naive_utc(e.next_due_at or now) for e in wanted.values()],
            "status": CLAIMED,
            "now": naive_utc(now),
        }
        rows = session.execute(_PG_CLAIMS, params).all()
        return {(s, se, p): i for i, s, se, p in rows}
    stored = sqlite_stored(session)
    at = stored(now)
    made: dict[tuple[int, int, int], int] = {}
    keys = list(wanted)
    for start in range(0, len(keys), SQLITE_ROWS):  # 9 parameters a row, under SQLite's limit
        part = keys[start : start + SQLITE_ROWS]
        values: list[Any] = []
        for key in part:
            due = stored(wanted[key].next_due_at)
            values += (key[0], key[1], key[2], CLAIMED, due, 0, at, at, at)
        session.flush()
        result = session.connection().exec_driver_sql(
            _SQLITE_CLAIMS.format(rows=",".join(["(?,?,?,?,?,?,?,?,?)"] * len(part))),
            tuple(values),
        )
        made.update({(s, se, p): i for i, s, se, p in result})
    return made


# --- claimed -> retry ----------------------------------------------------------------------------


def back_to_retry(
    session: Session, ids: list[int], at: dt.datetime, now: dt.datetime, error: str | None = None
) -> set[int]:
    """Claimed, not yet handed rows -> retry at `at`, by compare-and-set; the ids it changed.

    A duplicate copy of the send task may have handed (or sent) some of them since they were
    read: those, and their enrollments, must not turn back into retries."""
    values: dict[str, Any] = {"status": RETRY, "retry_at": at, "updated_at": now}
    if error is not None:
        values["last_error"] = error
    return set(
        session.scalars(
            update(Delivery)
            .where(
                among(session, Delivery.id, ids),
                status_is(CLAIMED),
                Delivery.retry_at.is_not(None),
            )
            .values(**values)
            .returning(Delivery.id)
            .execution_options(synchronize_session=False)
        )
    )


# --- handed -> sent / failed / retry -------------------------------------------------------------

_PG_SENT = text(
    "UPDATE deliveries SET status = :status, provider_message_id = t.m, sent_at = :now,"
    " retry_at = NULL, last_error = CASE WHEN deliveries.last_error LIKE :resent"
    " THEN deliveries.last_error END, crashes = deliveries.crashes - 1, updated_at = :now"
    " FROM unnest(CAST(:ids AS integer[]), CAST(:mids AS varchar[])) AS t(i, m)"
    " WHERE deliveries.id = t.i"
)


def record(
    session: Session,
    sent_rows: list[dict[str, Any]],
    other_rows: list[dict[str, Any]],
    now: dt.datetime,
) -> None:
    """Bulk ledger updates (executemany; the session's Delivery objects are not refreshed)."""
    fast = {"synchronize_session": False}

    if sent_rows and session.get_bind().dialect.name == "postgresql":
        session.execute(  # one statement with array parameters instead of 1,000 UPDATEs
            _PG_SENT,
            {
                "ids": [r["i"] for r in sent_rows],
                "mids": [r["m"] for r in sent_rows],
                "status": SENT,
                "resent": f"{RESENT_NOTE}%",
                "now": naive_utc(now),
            },
        )
    elif sent_rows:  # SQLite: the same UPDATE, one executemany of plain tuples
        at, kept = sqlite_stored(session)(now), f"{RESENT_NOTE}%"
        sqlite_executemany(
            session,
            "UPDATE deliveries SET status = ?, provider_message_id = ?, sent_at = ?,"
            " retry_at = NULL, last_error = CASE WHEN last_error LIKE ? THEN last_error END,"
            " crashes = crashes - 1, updated_at = ? WHERE id = ?",
            [(SENT, r["m"], at, kept, at, r["i"]) for r in sent_rows],
        )
    if other_rows:
        session.execute(
            update(Delivery.__table__)  # type: ignore[arg-type]
            .where(Delivery.__table__.c.id == bindparam("i"))
            .values(
                status=bindparam("s"),
                retry_at=bindparam("r"),
                last_error=bindparam("e"),
                crashes=Delivery.__table__.c.crashes - 1,
                updated_at=now,
            ),
            other_rows,
            execution_options=fast,
        )


# --- enrollments ---------------------------------------------------------------------------------

_PG_MOVE = text(
    "UPDATE enrollments SET next_part = t.p, next_due_at = t.d, updated_at = :now"
    " FROM unnest(CAST(:ids AS integer[]), CAST(:parts AS integer[]),"
    " CAST(:dues AS timestamp[])) AS t(i, p, d)"
    " WHERE enrollments.id = t.i"
)


def move_enrollments(session: Session, moved: list[Move]) -> None:
    """Write the collected advances: one statement on PostgreSQL, one executemany on SQLite.

    Those Enrollment objects were left untouched in the session, so no flush overwrites them.
    """
    if not moved:
        return
    if session.get_bind().dialect.name == "postgresql":
        session.execute(
            _PG_MOVE,
            {
                "ids": [m[0] for m in moved],
                "parts": [m[1] for m in moved],
                "dues": [None if m[2] is None else naive_utc(m[2]) for m in moved],
                "now": naive_utc(utcnow()),
            },
        )
        return
    stored = sqlite_stored(session)
    at = stored(utcnow())
    sqlite_executemany(
        session,
        "UPDATE enrollments SET next_part = ?, next_due_at = ?, updated_at = ? WHERE id = ?",
        [(p, stored(d), at, i) for i, p, d in moved],
    )


def set_due(session: Session, dues: list[tuple[int, dt.datetime]]) -> None:
    """Enrollments due again at a given time (retries): one executemany."""
    if not dues:
        return
    table: Any = Enrollment.__table__
    session.execute(
        update(table)
        .where(table.c.id == bindparam("i"))
        .values(next_due_at=bindparam("d"), updated_at=utcnow()),
        [{"i": i, "d": d} for i, d in dues],
        execution_options={"synchronize_session": False},
    )
