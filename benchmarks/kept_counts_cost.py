"""What counts kept per calendar group would cost the send path: chunk_cost.py's chunks with a
prototype trigger on enrollments (never part of the schema; measured here, not built).

    TEST_DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:5432/test \\
        PYTHONPATH=.:tests .venv/bin/python -m pytest benchmarks/kept_counts_cost.py \\
        -p conftest -q -s -k postgresql

Each prototype moves a reader's active place out of its group and into the next when the send
path moves the enrollment (next part, next due moment), with the reader's zone, cadence and
pause looked up: the least any kept count must do on the hot path. It leaves out what an exact
one also needs (the waiting queue in the key, the broadcast moments, every other writer of
enrollments and subscribers), so its cost is a lower bound. Compare the backend CPU per 1,000
and the per-statement split of "none" with each trigger's; run them alternately.

- statement_delta (PostgreSQL): one statement-level trigger with transition tables appends
  -1/+1 rows to a log (no row locks shared between senders; a reader sums the log);
- statement_counts (PostgreSQL): the same folded per group and upserted into a counts table
  (one row per group: concurrent chunks of the same group wait on each other's row locks);
- row_delta: a row-level trigger appending -1/+1 rows, the only kind SQLite has;
- queue_on_reader: not a count; each reader's waiting queue kept as text on the reader (a row
  trigger whose WHEN is true only when a queued place changes), so the grouping reads it from
  the reader instead of a window: what it costs a send that moves no queued place.
"""

from __future__ import annotations

from typing import Any

import chunk_cost
import pytest
from sqlalchemy import text

from newsletter.store.db import get_engine

_LOG = (
    "CREATE TABLE kept_log (series_id int, next_part int, next_due_at timestamp, timezone text,"
    " cadence text, paused_until date, not_before date, n int)"
)
_SIDES = (  # a moved chunk's old places out (-1) and new places in (+1), with their readers
    "SELECT o.series_id, o.next_part, o.next_due_at, s.timezone, s.cadence, s.paused_until,"
    " o.not_before, -1 AS n FROM old_rows o JOIN subscribers s ON s.id = o.subscriber_id"
    " WHERE o.state = 'active' UNION ALL SELECT w.series_id, w.next_part, w.next_due_at,"
    " s.timezone, s.cadence, s.paused_until, w.not_before, 1 FROM new_rows w"
    " JOIN subscribers s ON s.id = w.subscriber_id WHERE w.state = 'active'"
)
_STATEMENT = (
    "CREATE TRIGGER kept_move AFTER UPDATE ON enrollments REFERENCING OLD TABLE AS old_rows"
    " NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION kept_move()"
)
_KEY = "series_id, next_part, next_due_at, timezone, cadence, paused_until, not_before"
_ROW_SIDE = (
    "INSERT INTO kept_log SELECT {r}.series_id, {r}.next_part, {r}.next_due_at, s.timezone,"
    " s.cadence, s.paused_until, {r}.not_before, {n} FROM subscribers s"
    " WHERE s.id = {r}.subscriber_id"
)

_QUEUE_COLUMN = "ALTER TABLE subscribers ADD COLUMN kept_queue text"
_QUEUE_WHEN = "OLD.state = 'queued' OR NEW.state = 'queued'"

PROTOTYPES: dict[str, dict[str, list[str]]] = {
    "postgresql": {
        "none": [],
        "statement_delta": [
            _LOG,
            "CREATE FUNCTION kept_move() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
            f" INSERT INTO kept_log {_SIDES}; RETURN NULL; END $$",
            _STATEMENT,
        ],
        "statement_counts": [
            _LOG.replace("kept_log", "kept_counts"),
            f"CREATE UNIQUE INDEX kept_counts_key ON kept_counts ({_KEY}) NULLS NOT DISTINCT",
            "CREATE FUNCTION kept_move() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
            f" INSERT INTO kept_counts SELECT {_KEY}, sum(n) FROM ({_SIDES}) d"
            f" GROUP BY {_KEY} ORDER BY {_KEY} ON CONFLICT ({_KEY})"
            " DO UPDATE SET n = kept_counts.n + excluded.n; RETURN NULL; END $$",
            _STATEMENT,
        ],
        "row_delta": [
            _LOG,
            "CREATE FUNCTION kept_move() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            + _ROW_SIDE.format(r="OLD", n=-1)
            + "; "
            + _ROW_SIDE.format(r="NEW", n=1)
            + "; RETURN NULL; END $$",
            "CREATE TRIGGER kept_move AFTER UPDATE OF next_part, next_due_at ON enrollments"
            " FOR EACH ROW WHEN (OLD.state = 'active') EXECUTE FUNCTION kept_move()",
        ],
        "queue_on_reader": [
            _QUEUE_COLUMN,
            "CREATE FUNCTION kept_move() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
            " UPDATE subscribers SET kept_queue = (SELECT string_agg(e.series_id || ':' ||"
            " e.next_part || ':' || coalesce(e.not_before::text, ''), ';' ORDER BY e.position,"
            " e.id) FROM enrollments e WHERE e.subscriber_id = NEW.subscriber_id"
            " AND e.state = 'queued') WHERE id = NEW.subscriber_id; RETURN NULL; END $$",
            "CREATE TRIGGER kept_move AFTER UPDATE ON enrollments FOR EACH ROW"
            f" WHEN ({_QUEUE_WHEN}) EXECUTE FUNCTION kept_move()",
        ],
    },
    "sqlite": {
        "none": [],
        "row_delta": [
            _LOG,
            "CREATE TRIGGER kept_move AFTER UPDATE OF next_part, next_due_at ON enrollments"
            " WHEN OLD.state = 'active' BEGIN "
            + _ROW_SIDE.format(r="OLD", n=-1)
            + "; "
            + _ROW_SIDE.format(r="NEW", n=1)
            + "; END",
        ],
        "queue_on_reader": [
            _QUEUE_COLUMN,
            f"CREATE TRIGGER kept_move AFTER UPDATE ON enrollments WHEN {_QUEUE_WHEN} BEGIN"
            " UPDATE subscribers SET kept_queue = (SELECT group_concat(t, ';') FROM (SELECT"
            " e.series_id || ':' || e.next_part || ':' || coalesce(e.not_before, '') AS t"
            " FROM enrollments e WHERE e.subscriber_id = NEW.subscriber_id"
            " AND e.state = 'queued' ORDER BY e.position, e.id)) WHERE id = NEW.subscriber_id; END",
        ],
    },
}
DROP = {
    "postgresql": [
        "DROP TRIGGER IF EXISTS kept_move ON enrollments",
        "DROP FUNCTION IF EXISTS kept_move()",
        "DROP TABLE IF EXISTS kept_log, kept_counts",
        "ALTER TABLE subscribers DROP COLUMN IF EXISTS kept_queue",
    ],
    "sqlite": ["DROP TRIGGER IF EXISTS kept_move", "DROP TABLE IF EXISTS kept_log"],
}


@pytest.mark.parametrize(
    "prototype", ["none", "statement_delta", "statement_counts", "row_delta", "queue_on_reader"]
)
def test_kept_counts_cost(sg: Any, prototype: str, monkeypatch: pytest.MonkeyPatch) -> None:
    settings, _ = sg
    engine = get_engine(settings.database_url)
    ddl = PROTOTYPES[engine.dialect.name].get(prototype)
    if ddl is None:
        pytest.skip(f"{prototype}: no such trigger on {engine.dialect.name}")
    # installed after chunk_cost's readers are enrolled (their enrollment is not the send path)
    enrolled = chunk_cost.batch_readers

    def readers_then_trigger(*args: Any) -> list[int]:
        ids = enrolled(*args)
        with engine.begin() as conn:
            for statement in ddl:
                conn.execute(text(statement.replace(":", "\\:")))
        return ids

    monkeypatch.setattr(chunk_cost, "batch_readers", readers_then_trigger)
    print(f"\nprototype: {prototype}")
    try:
        chunk_cost.test_chunk_cost(sg)
        if ddl and prototype != "queue_on_reader":  # that one fires only when a queue changes
            table = "kept_counts" if prototype == "statement_counts" else "kept_log"
            with engine.connect() as conn:
                rows, moved = conn.execute(text(f"SELECT count(*), sum(n) FROM {table}")).one()
            print(f"{table}: {rows} rows, sum {moved} (the trigger ran)")
            assert rows and not moved, (rows, moved)  # every -1 has its +1
    finally:  # the test database outlives this test on PostgreSQL
        with engine.begin() as conn:
            for statement in DROP[engine.dialect.name]:
                conn.execute(text(statement))
