"""Where SQLite and PostgreSQL differ: the conditions and bulk-write helpers the ledger shares."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from sqlalchemy import func, true
from sqlalchemy.orm import Session

from newsletter.store import pg_array
from newsletter.store.models import Delivery, UTCDateTime


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
    1,000 placeholders per statement: that was a fifth of send_chunk's CPU. The array goes as
    its text literal (store.pg_array)."""
    values = list(values)
    if session.get_bind().dialect.name == "postgresql":
        return pg_array.any_of(column, values)
    return column.in_(values)


def status_is(status: str) -> Any:
    """`Delivery.status == status` that the planner can't answer from the status index.

    For statements that already name their rows by id: mid-burst the ledger holds up to N
    `claimed` rows while the statistics (gathered before the burst) say they are rare, and
    PostgreSQL then scanned ix_deliveries_status_updated (every claimed row) instead of the
    primary key for each chunk: 3+ s per chunk at N = 1,000,000.
    """
    return func.coalesce(Delivery.status, "") == status


TABLE: Any = Delivery.__table__  # Core statements (executemany) skip the ORM's bookkeeping
