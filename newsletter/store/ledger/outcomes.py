"""Outcomes: handed rows recorded as sent, failed, retry or unknown, in bulk."""

from __future__ import annotations

import datetime as dt
from typing import NamedTuple

from sqlalchemy import bindparam, text, update
from sqlalchemy.orm import Session

from newsletter.store import pg_array
from newsletter.store.ledger.dialect import TABLE, naive_utc, sqlite_executemany, sqlite_stored
from newsletter.store.ledger.moves import move_enrollments, pg_move_sql, pg_moves
from newsletter.store.ledger.rows import RESENT_NOTE, Move
from newsletter.store.models import SENT, Part, utcnow

_PG_SENT_SQL = (
    "UPDATE deliveries SET status = :status, provider_message_id = t.m, sent_at = :now,"
    " retry_at = NULL, last_error = CASE WHEN deliveries.last_error LIKE :resent"
    " THEN deliveries.last_error END, crashes = deliveries.crashes - 1, updated_at = :now"
    " FROM unnest(CAST(:ids AS integer[]), CAST(:mids AS varchar[])) AS t(i, m)"
    " WHERE deliveries.id = t.i"
)
_PG_SENT = text(_PG_SENT_SQL)

# PostgreSQL: a chunk's accepted rows, the enrollment moves they cause and the part's first send,
# one statement (data-modifying CTEs run once each, whether or not the outer query reads them):
# the same UPDATEs as `moves.pg_move_sql` and _PG_SENT, put together.
_PG_SENT_MOVED = text(
    f"WITH moved AS ({pg_move_sql('moved_at')} RETURNING 1),"
    " first AS (UPDATE parts SET first_sent_at = :now WHERE parts.id = CAST(:part AS integer)"
    f" AND parts.first_sent_at IS NULL RETURNING 1) {_PG_SENT_SQL}"
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


def _pg_sent(sent_rows: list[SentRow]) -> dict[str, str]:
    """The accepted rows as the two arrays PostgreSQL's sent statements unnest (ids, mids)."""
    return {
        "ids": pg_array.ints([r.delivery_id for r in sent_rows]),
        "mids": pg_array.texts([r.message_id for r in sent_rows]),
    }


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
                **_pg_sent(sent_rows),
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
            update(TABLE)
            .where(TABLE.c.id == bindparam("i"))
            .values(
                status=bindparam("s"),
                retry_at=bindparam("r"),
                last_error=bindparam("e"),
                crashes=TABLE.c.crashes - 1,
                updated_at=now,
            ),
            [{"i": i, "s": st, "r": r, "e": e} for i, st, r, e in other_rows],
            execution_options=fast,
        )


def record_chunk(
    session: Session,
    sent_rows: list[SentRow],
    other_rows: list[OutcomeRow],
    moved: list[Move],
    now: dt.datetime,
    first_sent: Part | None = None,
) -> None:
    """A chunk's outcomes (`record`), the enrollment moves they cause (`move_enrollments`) and,
    with `first_sent`, the part's first send stamped (if not yet). On PostgreSQL the accepted
    rows, the moves and the stamp are one statement: a chunk's happy path writes in one round
    trip. Elsewhere the same writes, one statement each."""
    if sent_rows and session.get_bind().dialect.name == "postgresql":
        session.execute(
            _PG_SENT_MOVED,
            {
                **pg_moves(moved),
                "moved_at": naive_utc(utcnow()),
                "part": None if first_sent is None else first_sent.id,
                **_pg_sent(sent_rows),
                "status": SENT,
                "resent": f"{RESENT_NOTE}%",
                "now": naive_utc(now),
            },
        )
        record(session, [], other_rows, now)
        return
    move_enrollments(session, moved)
    record(session, sent_rows, other_rows, now)
    if first_sent is not None and sent_rows:
        session.execute(
            update(Part)
            .where(Part.id == first_sent.id, Part.first_sent_at.is_(None))
            .values(first_sent_at=now)
        )


def note_unknown(session: Session, rows: list[UnknownRow]) -> None:
    """Handed rows with no answer stay handed (claimed, retry_at NULL) for reconcile: the reason
    noted, the crash count taken back; updated_at stays the hand-over time (reconcile's window
    counts from it). One executemany."""
    if not rows:
        return
    session.execute(
        update(TABLE)
        .where(TABLE.c.id == bindparam("i"))
        .values(
            last_error=bindparam("e"),
            crashes=TABLE.c.crashes - 1,
            updated_at=TABLE.c.updated_at,
        ),
        [{"i": i, "e": e} for i, e in rows],
        execution_options={"synchronize_session": False},
    )
