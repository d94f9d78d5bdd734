"""The ledger: every statement that writes the deliveries table, and the named reads of it.

No other module writes `deliveries` (tests/store/test_ledger.py scans the package for it); the
engine, services and views call the functions here by name.

Ledger states (one row per subscriber, series and part; the unique constraint decides):
- claimed, retry_at set   : row written, provider not called yet (retry_at = claim time).
- claimed, retry_at NULL  : handed to the provider (compare-and-set, committed before the call);
                            outcome unknown until recorded; `reconcile` settles it.
- sent                    : accepted; enrollment advanced in the same transaction.
- retry                   : due again at retry_at (rate limit, 5xx, render error, halt).
- failed                  : permanent for this address; the enrollment moves on.
Every statement here names its rows by id or by (subscriber, series, part) and does one thing;
PostgreSQL gets array parameters (unnest / ANY) where SQLite gets IN lists and executemany: the
differences between the two databases stay in this module. The bulk moves of enrollments that a
chunk's outcomes cause are written here too, next to the ledger rows they follow.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

from sqlalchemy import and_, any_, bindparam, delete, func, select, text, true, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session

from newsletter.store.models import (
    CLAIMED,
    FAILED,
    RETRY,
    SENT,
    Delivery,
    Enrollment,
    Part,
    ProviderEvent,
    Series,
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


_TABLE: Any = Delivery.__table__  # Core statements (executemany) skip the ORM's bookkeeping


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


class SentRow(NamedTuple):
    """A handed row the provider accepted: its id and the provider's message id."""

    delivery_id: int
    message_id: str


class OutcomeRow(NamedTuple):
    """A handed row that failed (permanent) or goes back to retry at `retry_at`."""

    delivery_id: int
    status: str
    retry_at: dt.datetime | None
    error: str


class UnknownRow(NamedTuple):
    """A handed row the provider gave no answer for: it stays handed, with the reason."""

    delivery_id: int
    error: str


def record(
    session: Session,
    sent_rows: list[SentRow],
    other_rows: list[OutcomeRow],
    now: dt.datetime,
) -> None:
    """Bulk ledger updates (executemany; the session's Delivery objects are not refreshed)."""
    fast = {"synchronize_session": False}

    if sent_rows and session.get_bind().dialect.name == "postgresql":
        session.execute(  # one statement with array parameters instead of 1,000 UPDATEs
            _PG_SENT,
            {
                "ids": [r.delivery_id for r in sent_rows],
                "mids": [r.message_id for r in sent_rows],
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
            [(SENT, mid, at, kept, at, i) for i, mid in sent_rows],
        )
    if other_rows:
        session.execute(
            update(_TABLE)
            .where(_TABLE.c.id == bindparam("i"))
            .values(
                status=bindparam("s"),
                retry_at=bindparam("r"),
                last_error=bindparam("e"),
                crashes=_TABLE.c.crashes - 1,
                updated_at=now,
            ),
            [{"i": i, "s": st, "r": r, "e": e} for i, st, r, e in other_rows],
            execution_options=fast,
        )


def note_unknown(session: Session, rows: list[UnknownRow]) -> None:
    """Handed rows with no answer stay handed (claimed, retry_at NULL) for reconcile: the reason
    noted, the crash count taken back; updated_at stays the hand-over time (reconcile's window
    counts from it). One executemany."""
    if not rows:
        return
    session.execute(
        update(_TABLE)
        .where(_TABLE.c.id == bindparam("i"))
        .values(
            last_error=bindparam("e"),
            crashes=_TABLE.c.crashes - 1,
            updated_at=_TABLE.c.updated_at,
        ),
        [{"i": i, "e": e} for i, e in rows],
        execution_options={"synchronize_session": False},
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


# --- send_chunk: the chunk's rows; claimed -> forgotten; claimed -> handed ------------------------


def claimed_rows(session: Session, ids: list[int]) -> list[tuple[LedgerRow, PersonRow, PlaceRow]]:
    """The chunk's rows still claimed and not handed, with their subscriber and enrollment.

    The ledger row, the subscriber and the enrollment as plain columns: a chunk loads 1,000 of
    each. Filtered here, not in SQL: during a burst most of the ledger is `claimed`, and a
    status condition can tempt the planner into scanning the status index instead of looking
    the chunk's ids up by primary key."""
    found = session.execute(
        select(*LEDGER_COLUMNS, *PERSON_COLUMNS, *PLACE_COLUMNS)
        .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
        .join(
            Enrollment,
            and_(
                Enrollment.subscriber_id == Delivery.subscriber_id,
                Enrollment.series_id == Delivery.series_id,
            ),
        )
        .where(among(session, Delivery.id, ids), id_range(ids))
    ).all()
    return [split_row(r) for r in found if r[1] == CLAIMED and r[2] is not None]


def forget_claimed(session: Session, ids: list[int]) -> None:
    """claimed (never handed) -> deleted: rows that must not be sent now, so a later resume or
    resubscribe sends the part then. Compare-and-set: a handed row is never deleted."""
    if not ids:
        return
    session.execute(
        delete(Delivery).where(
            among(session, Delivery.id, ids),
            status_is(CLAIMED),
            Delivery.retry_at.is_not(None),
        )
    )


def hand_over(session: Session, ids: list[int], chunk_ids: list[int], now: dt.datetime) -> set[int]:
    """claimed -> handed by compare-and-set (the caller commits before calling the provider):
    only the process that flips a row may call the provider for it. The ids it flipped.

    `now` is the hand-over time, which reconcile's window counts from (a Celery task adds its
    queueing delay to the tick's); crashes + 1 until the outcome is recorded: a process that
    dies meanwhile leaves it counted (poison rows, see reconcile)."""
    return set(
        session.scalars(
            update(Delivery)
            .where(
                among(session, Delivery.id, ids),
                id_range(chunk_ids),
                status_is(CLAIMED),
                Delivery.retry_at.is_not(None),
            )
            .values(
                attempts=Delivery.attempts + 1,
                crashes=Delivery.crashes + 1,
                retry_at=None,
                updated_at=now,
            )
            .returning(Delivery.id)
            .execution_options(synchronize_session=False)  # rows are read by id afterwards
        )
    )


# --- plan: rows that already exist; retry -> claimed ------------------------------------------


class ExistingRow(NamedTuple):
    """A ledger row a claim ran into (the unique constraint said it was there)."""

    id: int
    subscriber_id: int
    series_id: int
    part_number: int
    status: str
    retry_at: dt.datetime | None
    scheduled_for: dt.datetime
    crashes: int


def existing_rows(session: Session, keys: set[tuple[int, int, int]]) -> list[ExistingRow]:
    """The ledger rows of these (subscriber, series, part) keys, in one SELECT.

    IN lists, filtered to the exact keys here: a batch of triples as one OR of ANDs is an
    expression 1,000 deep, which SQLite refuses."""
    found = session.execute(
        select(
            Delivery.id,
            Delivery.subscriber_id,
            Delivery.series_id,
            Delivery.part_number,
            Delivery.status,
            Delivery.retry_at,
            Delivery.scheduled_for,
            Delivery.crashes,
        ).where(
            among(session, Delivery.subscriber_id, {k[0] for k in keys}),
            Delivery.series_id.in_({k[1] for k in keys}),
            Delivery.part_number.in_({k[2] for k in keys}),
        )
    ).all()
    rows = []
    for i, s, se, p, status, retry_at, scheduled, crashes in found:
        if (int(s or 0), se, p) in keys:
            rows.append(ExistingRow(i, int(s or 0), se, p, status, retry_at, scheduled, crashes))
    return rows


def take_back_ready(session: Session, ids: list[int], now: dt.datetime) -> set[int]:
    """retry -> claimed (claim time `now`) by compare-and-set, for rows named by id; the ids
    taken (a row another tick took first is not)."""
    if not ids:
        return set()
    return set(
        session.scalars(
            update(Delivery)
            .where(among(session, Delivery.id, ids), id_range(ids), status_is(RETRY))
            .values(status=CLAIMED, retry_at=now, updated_at=now)
            .returning(Delivery.id)
            .execution_options(synchronize_session=False)
        )
    )


# --- reconcile: rows stuck in claimed ------------------------------------------------------------


class HandedRow(NamedTuple):
    """A handed row whose outcome is unknown: id, hand-over time, crashes counted against it."""

    id: int
    handed_at: dt.datetime
    crashes: int


class SettledRow(NamedTuple):
    """A handed row whose outcome was recorded after the fact: whose and which part."""

    subscriber_id: int
    series_id: int
    part_number: int
    scheduled_for: dt.datetime


def requeue_lost(session: Session, stale: dt.datetime, now: dt.datetime) -> list[int]:
    """claimed, never handed and claimed before `stale` (the send task was lost) -> retry now;
    the ids."""
    return list(
        session.scalars(
            update(Delivery)
            .where(
                Delivery.status == CLAIMED,
                Delivery.retry_at.is_not(None),
                Delivery.retry_at < stale,
            )
            .values(status=RETRY, retry_at=now, updated_at=now)
            .returning(Delivery.id)
        )
    )


def handed_before(session: Session, stale: dt.datetime, limit: int = 10_000) -> list[HandedRow]:
    """Handed rows (claimed, retry_at NULL) handed over before `stale`: outcome unknown."""
    return [
        HandedRow(*row)
        for row in session.execute(
            select(Delivery.id, Delivery.updated_at, Delivery.crashes)
            .where(
                Delivery.status == CLAIMED,
                Delivery.retry_at.is_(None),
                Delivery.updated_at < stale,
            )
            .limit(limit)
        )
    ]


def resend(session: Session, ids: list[int], now: dt.datetime) -> None:
    """handed -> retry now, noting why the reader may get the part twice (RESENT_NOTE)."""
    if not ids:
        return
    session.execute(
        update(Delivery)
        .where(Delivery.id.in_(ids), Delivery.status == CLAIMED)
        .values(status=RETRY, retry_at=now, updated_at=now, last_error=RESENT_NOTE)
    )


def settle_handed(
    session: Session,
    delivery_id: int,
    status: str,
    now: dt.datetime,
    *,
    message_id: str | None = None,
    error: str | None = None,
) -> SettledRow | None:
    """A handed row's outcome found after the fact: `sent` (with the provider's message id) or
    `failed` (with the reason). None when the row is gone, no longer claimed, or erased."""
    d = session.get(Delivery, delivery_id)
    if d is None or d.status != CLAIMED or d.subscriber_id is None:
        return None
    d.status, d.updated_at = status, now
    if status == SENT:
        d.provider_message_id, d.sent_at = message_id, now
    else:
        d.last_error = error
    return SettledRow(d.subscriber_id, d.series_id, d.part_number, d.scheduled_for)


def enrollment_ids_of(session: Session, delivery_ids: list[int]) -> list[int]:
    """The enrollments these ledger rows belong to (1,000 ids per SELECT)."""
    found: list[int] = []
    for start in range(0, len(delivery_ids), 1000):
        found.extend(
            session.scalars(
                select(Enrollment.id)
                .join(
                    Delivery,
                    and_(
                        Delivery.subscriber_id == Enrollment.subscriber_id,
                        Delivery.series_id == Enrollment.series_id,
                    ),
                )
                .where(Delivery.id.in_(delivery_ids[start : start + 1000]))
            )
        )
    return found


# --- provider events ---------------------------------------------------------------------------


class EventRef(NamedTuple):
    """A ledger row a provider event names: whose, and where it stands."""

    id: int
    subscriber_id: int | None
    status: str
    retry_at: dt.datetime | None


def rows_by_id(session: Session, ids: list[int]) -> list[EventRef]:
    """The ledger rows with these ids (one SELECT; the caller chunks)."""
    return [
        EventRef(*row)
        for row in session.execute(
            select(Delivery.id, Delivery.subscriber_id, Delivery.status, Delivery.retry_at).where(
                Delivery.id.in_(ids)
            )
        )
    ]


def mark_delivered(session: Session, delivered: dict[int, dt.datetime]) -> None:
    """The provider's `delivered` moments; the first one wins (one executemany)."""
    if not delivered:
        return
    stmt = (
        update(_TABLE)
        .where(_TABLE.c.id == bindparam("row_id"))
        .values(
            delivered_at=func.coalesce(
                _TABLE.c.delivered_at, bindparam("at", type_=Delivery.delivered_at.type)
            )
        )
    )
    session.connection().execute(stmt, [{"row_id": k, "at": v} for k, v in delivered.items()])


def take_back_confirmed(session: Session, ids: list[int], now: dt.datetime) -> list[int]:
    """retry -> handed for rows the provider says it took after all (a timeout or 5xx said
    "retry"): compare-and-set, so a dispatch that already took the row for its retry wins.
    The ids taken back (the caller settles them as sent)."""
    if not ids:
        return []
    return list(
        session.scalars(
            update(Delivery)
            .where(Delivery.id.in_(ids), Delivery.status == RETRY)
            .values(status=CLAIMED, retry_at=None, updated_at=now)
            .returning(Delivery.id),
            execution_options={"synchronize_session": False},
        )
    )


def fill_message_ids(session: Session, message_ids: dict[int, str | None]) -> None:
    """The provider's message id on rows that have none yet (one executemany)."""
    if not message_ids:
        return
    stmt = (
        update(_TABLE)
        .where(_TABLE.c.id == bindparam("row_id"), _TABLE.c.provider_message_id.is_(None))
        .values(provider_message_id=bindparam("mid"))
    )
    session.connection().execute(stmt, [{"row_id": k, "mid": v} for k, v in message_ids.items()])


# --- erasure -------------------------------------------------------------------------------------


def forget_person(session: Session, subscriber_id: int) -> None:
    """Erasure: the person's rows keep only series, part and status (provider texts can quote
    the address)."""
    session.execute(
        update(Delivery)
        .where(Delivery.subscriber_id == subscriber_id)
        .values(subscriber_id=None, last_error=None, provider_message_id=None)
    )


# --- named reads for the views -------------------------------------------------------------------


class ReceivedPart(NamedTuple):
    """A part a reader was sent: series, part and when."""

    series_slug: str
    series_title: str
    part_number: int
    part_title: str
    sent_at: dt.datetime | None


def received_parts(session: Session, subscriber_id: int) -> list[ReceivedPart]:
    """The parts this reader was sent, oldest first."""
    return [
        ReceivedPart(*row)
        for row in session.execute(
            select(Series.slug, Series.title, Part.number, Part.title, Delivery.sent_at)
            .join(Series, Series.id == Delivery.series_id)
            .join(
                Part, (Part.series_id == Delivery.series_id) & (Part.number == Delivery.part_number)
            )
            .where(Delivery.subscriber_id == subscriber_id, Delivery.status == SENT)
            .order_by(Delivery.sent_at, Delivery.id)
        )
    ]


def sent_per_part(session: Session, series_ids: Any | None = None) -> dict[tuple[int, int], int]:
    """(series id, part number) -> how many people have been sent it; of `series_ids` only
    when given (an index range per series, not every sent row of the ledger)."""
    stmt = (
        select(Delivery.series_id, Delivery.part_number, func.count())
        .where(Delivery.status == SENT)
        .group_by(Delivery.series_id, Delivery.part_number)
    )
    if series_ids is not None:
        if not series_ids:
            return {}
        stmt = stmt.where(Delivery.series_id.in_(sorted(series_ids)))
    return {(sid, part): int(n) for sid, part, n in session.execute(stmt)}


class Outcomes(NamedTuple):
    """The ledger's outcomes since a moment: sent, failed, and retrying (waiting for a retry,
    or handed with no answer until reconcile settles it, as the tick summary counts them)."""

    sent: int
    failed: int
    retrying: int


def outcomes_since(session: Session, since: dt.datetime) -> Outcomes:
    sent = session.scalar(
        select(func.count()).where(Delivery.status == SENT, Delivery.sent_at >= since)
    )
    failed = session.scalar(
        select(func.count()).where(Delivery.status == FAILED, Delivery.updated_at >= since)
    )
    # two counts, each an index range on status: as one OR, SQLite read the whole ledger
    waiting = select(func.count()).where(Delivery.status == RETRY).scalar_subquery()
    unknown = (
        select(func.count())
        .where(
            Delivery.status == CLAIMED,
            Delivery.retry_at.is_(None),
            Delivery.last_error.like("outcome unknown%"),
        )
        .scalar_subquery()
    )
    retrying = session.scalar(select(waiting + unknown))
    return Outcomes(int(sent or 0), int(failed or 0), int(retrying or 0))


@dataclass(frozen=True)
class FailureRow:
    """A row that failed, waits for a retry, or bounced: for the dashboard and the API."""

    delivery_id: int
    subscriber_id: int | None
    email: str | None
    series_slug: str
    series_title: str
    part_number: int
    status: str
    reason: str
    when: dt.datetime


def _failure(
    d: Delivery,
    email: str | None,
    slug: str,
    title: str,
    status: str,
    reason: str,
    when: dt.datetime,
) -> FailureRow:
    return FailureRow(
        d.id, d.subscriber_id, email, slug, title, d.part_number, status, reason, when
    )


def failures_since(
    session: Session, since: dt.datetime, bounce_events: tuple[str, ...], limit: int = 50
) -> list[FailureRow]:
    """Rows failed or waiting for a retry since `since`, and rows the provider reported as
    bounced (one of `bounce_events`); newest first, at most `limit`."""
    failures: list[FailureRow] = []
    for d, slug, title, email in session.execute(
        select(Delivery, Series.slug, Series.title, Subscriber.email)
        .join(Series, Series.id == Delivery.series_id)
        .outerjoin(Subscriber, Subscriber.id == Delivery.subscriber_id)
        .where(Delivery.status.in_((FAILED, RETRY)), Delivery.updated_at >= since)
        .order_by(Delivery.updated_at.desc())
        .limit(limit)
    ):
        failures.append(
            _failure(
                d, email, slug, title, d.status, d.last_error or "no reason given", d.updated_at
            )
        )
    for ev, d, slug, title, email in session.execute(
        select(ProviderEvent, Delivery, Series.slug, Series.title, Subscriber.email)
        .join(Delivery, Delivery.id == ProviderEvent.delivery_id)
        .join(Series, Series.id == Delivery.series_id)
        .outerjoin(Subscriber, Subscriber.id == Delivery.subscriber_id)
        .where(ProviderEvent.event_type.in_(bounce_events), ProviderEvent.occurred_at >= since)
        .order_by(ProviderEvent.occurred_at.desc())
        .limit(limit)
    ):
        failures.append(
            _failure(
                d, email, slug, title, ev.event_type, ev.detail or ev.event_type, ev.occurred_at
            )
        )
    failures.sort(key=lambda f: f.when, reverse=True)
    return failures[:limit]


def person_history(session: Session, subscriber_id: int, limit: int = 200) -> list[Any]:
    """A reader's ledger rows with their series, newest first (the admin's person page)."""
    return list(
        session.execute(
            select(Delivery, Series)
            .join(Series, Series.id == Delivery.series_id)
            .where(Delivery.subscriber_id == subscriber_id)
            .order_by(Delivery.scheduled_for.desc(), Delivery.id.desc())
            .limit(limit)
        )
    )
