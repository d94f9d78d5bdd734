"""Enrollment moves that a chunk's outcomes cause, written in bulk next to their ledger rows."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import bindparam, text, update
from sqlalchemy.orm import Session

from newsletter.store import pg_array
from newsletter.store.ledger.dialect import naive_utc, sqlite_executemany, sqlite_stored
from newsletter.store.ledger.rows import Move
from newsletter.store.models import Enrollment, utcnow


def pg_move_sql(stamp: str) -> str:
    """PostgreSQL's UPDATE of a chunk's enrollment moves (the arrays of `pg_moves`), their
    updated_at from the parameter named `stamp`: alone here, and inside the sent rows'
    statement (outcomes._PG_SENT_MOVED)."""
    return (
        f"UPDATE enrollments SET next_part = t.p, next_due_at = t.d, updated_at = :{stamp}"
        " FROM unnest(CAST(:eids AS integer[]), CAST(:parts AS integer[]),"
        " CAST(:dues AS timestamp[])) AS t(i, p, d)"
        " WHERE enrollments.id = t.i"
    )


_PG_MOVE = text(pg_move_sql("now"))


def pg_moves(moved: list[Move]) -> dict[str, str]:
    """The moves as the three arrays PostgreSQL's move statements unnest (enrollment ids, parts,
    dues)."""
    return {
        "eids": pg_array.ints([m[0] for m in moved]),
        "parts": pg_array.ints([m[1] for m in moved]),
        "dues": pg_array.stamps([m[2] for m in moved]),
    }


def move_enrollments(session: Session, moved: list[Move]) -> None:
    """Write the collected advances: one statement on PostgreSQL, one executemany on SQLite.

    Those Enrollment objects were left untouched in the session, so no flush overwrites them.
    """
    if not moved:
        return
    if session.get_bind().dialect.name == "postgresql":
        session.execute(
            _PG_MOVE,
            {**pg_moves(moved), "now": naive_utc(utcnow())},
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
