"""waiting_queues: each reader's waiting queue kept by the database, so the calendar reads it

The calendar groups readers alike for the schedule rule, and the whole waiting queue behind a
reader's active series is part of what makes them alike. It was written per request by a window
over every active and queued enrollment (a sort of 180k rows at 100k readers: two thirds of the
four-week calendar's time on PostgreSQL). A queue changes rarely (a series queued or chosen, a
queued one starting, a reader deleted), never on an ordinary send, so it is kept here instead,
one row per reader with at least one queued place, as the text the window wrote:
"series:part:start;…" in queue order (position, id), every queued place whatever its series'
state (the calendar keeps the live ones).

Kept by triggers on enrollments, in the writer's own transaction, so no writer can miss it and a
crash leaves it exactly as right as the enrollments: after every insert, delete, and update that
touches a queued place (state, series, part, start, position or reader). On PostgreSQL an
insert is handled per statement (its new rows as a transition table: an import or `series
queue` inserts thousands at a time), the rest per row, with a WHEN that is false for an
ordinary send (an active place moving on). SQLite has row triggers only.

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-07 21:45:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# a queued place as text: what store/calendar/groups.py parses back (`_waiting`)
_PG_ITEM = "e.series_id || ':' || e.next_part || ':' || coalesce(e.not_before::text, '')"
_SQLITE_ITEM = "e.series_id || ':' || e.next_part || ':' || coalesce(e.not_before, '')"
# A reader's queued places found by the reader alone, the state a FILTER: with `state =
# 'queued'` in the WHERE, a table not analysed since it filled (a fresh import, a first queue)
# let PostgreSQL pick the state index and read every queued place of every reader on each
# call (2 ms a row at 20k readers: a series queued again with a new start took 28-49 s, now
# 4 s); found by the reader alone, only the reader's index fits.
_PG_QUEUE = (
    f"string_agg({_PG_ITEM}, ';' ORDER BY e.position, e.id) FILTER (WHERE e.state = 'queued')"
)


def _changed(differs: str) -> str:
    """An update that moves a queued place, or makes or ends one; `differs` is the dialect's
    null-safe "not equal" (SQLite's IS NOT: its IS DISTINCT FROM needs 3.39)."""
    columns = ("state", "series_id", "next_part", "not_before", "position", "subscriber_id")
    moved = " OR ".join(f"OLD.{c} {differs} NEW.{c}" for c in columns)
    return f"(OLD.state = 'queued' OR NEW.state = 'queued') AND ({moved})"


PG_UP = (
    # one reader's queue written again (or its row dropped when nothing waits). The reader's row
    # is locked first and the queue read after, in a statement of its own (a snapshot taken once
    # the lock is ours): two transactions changing one reader's queue write it in turn, the
    # second from what the first committed, never from what it saw before
    "CREATE FUNCTION nl_keep_waiting(reader integer) RETURNS void LANGUAGE plpgsql AS $$"
    " DECLARE q text; BEGIN"
    " PERFORM 1 FROM subscribers WHERE id = reader FOR NO KEY UPDATE;"
    f" SELECT {_PG_QUEUE} INTO q FROM enrollments e WHERE e.subscriber_id = reader;"
    " IF q IS NULL THEN DELETE FROM waiting_queues WHERE subscriber_id = reader;"
    " ELSE INSERT INTO waiting_queues (subscriber_id, places) VALUES (reader, q)"
    " ON CONFLICT (subscriber_id) DO UPDATE SET places = EXCLUDED.places; END IF; END $$",
    "CREATE FUNCTION nl_waiting_row() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
    " IF TG_OP <> 'INSERT' THEN PERFORM nl_keep_waiting(OLD.subscriber_id); END IF;"
    " IF TG_OP = 'UPDATE' AND NEW.subscriber_id IS DISTINCT FROM OLD.subscriber_id THEN"
    " PERFORM nl_keep_waiting(NEW.subscriber_id); END IF; RETURN NULL; END $$",
    # inserted queued places: every reader they belong to, in one statement
    "CREATE FUNCTION nl_waiting_added() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
    " PERFORM 1 FROM subscribers WHERE id IN (SELECT a.subscriber_id FROM added a"
    " WHERE a.state = 'queued') ORDER BY id FOR NO KEY UPDATE;"  # in id order, as the send locks
    " INSERT INTO waiting_queues (subscriber_id, places)"
    f" SELECT e.subscriber_id, {_PG_QUEUE} FROM enrollments e WHERE e.subscriber_id IN"
    " (SELECT a.subscriber_id FROM added a WHERE a.state = 'queued') GROUP BY e.subscriber_id"
    " ON CONFLICT (subscriber_id) DO UPDATE SET places = EXCLUDED.places; RETURN NULL; END $$",
    "CREATE TRIGGER nl_waiting_insert AFTER INSERT ON enrollments REFERENCING NEW TABLE AS added"
    " FOR EACH STATEMENT EXECUTE FUNCTION nl_waiting_added()",
    "CREATE TRIGGER nl_waiting_update AFTER UPDATE ON enrollments FOR EACH ROW"
    f" WHEN ({_changed('IS DISTINCT FROM')}) EXECUTE FUNCTION nl_waiting_row()",
    "CREATE TRIGGER nl_waiting_delete AFTER DELETE ON enrollments FOR EACH ROW"
    " WHEN (OLD.state = 'queued') EXECUTE FUNCTION nl_waiting_row()",
)
PG_DOWN = (
    "DROP TRIGGER IF EXISTS nl_waiting_insert ON enrollments",
    "DROP TRIGGER IF EXISTS nl_waiting_update ON enrollments",
    "DROP TRIGGER IF EXISTS nl_waiting_delete ON enrollments",
    "DROP FUNCTION IF EXISTS nl_waiting_added()",
    "DROP FUNCTION IF EXISTS nl_waiting_row()",
    "DROP FUNCTION IF EXISTS nl_keep_waiting(integer)",
)


def _sqlite_keep(reader: str, only: str = "1") -> str:
    """SQLite trigger steps (no IF in a trigger): one reader's row dropped, then written again
    if anything waits; both only when `only` holds."""
    return (
        f"DELETE FROM waiting_queues WHERE subscriber_id = {reader} AND {only};"
        f" INSERT INTO waiting_queues (subscriber_id, places) SELECT {reader}, q FROM"
        f" (SELECT group_concat(t, ';') AS q FROM (SELECT {_SQLITE_ITEM} AS t FROM enrollments e"
        f" WHERE e.subscriber_id = {reader} AND e.state = 'queued' ORDER BY e.position, e.id))"
        f" WHERE q IS NOT NULL AND {only};"
    )


SQLITE_UP = (
    "CREATE TRIGGER nl_waiting_insert AFTER INSERT ON enrollments WHEN NEW.state = 'queued'"
    f" BEGIN {_sqlite_keep('NEW.subscriber_id')} END",
    f"CREATE TRIGGER nl_waiting_update AFTER UPDATE ON enrollments WHEN {_changed('IS NOT')} BEGIN"
    f" {_sqlite_keep('OLD.subscriber_id')}"
    f" {_sqlite_keep('NEW.subscriber_id', 'NEW.subscriber_id IS NOT OLD.subscriber_id')} END",
    "CREATE TRIGGER nl_waiting_delete AFTER DELETE ON enrollments WHEN OLD.state = 'queued'"
    f" BEGIN {_sqlite_keep('OLD.subscriber_id')} END",
)
SQLITE_DOWN = (
    "DROP TRIGGER IF EXISTS nl_waiting_insert",
    "DROP TRIGGER IF EXISTS nl_waiting_update",
    "DROP TRIGGER IF EXISTS nl_waiting_delete",
)

BACKFILL = (
    "INSERT INTO waiting_queues (subscriber_id, places) SELECT e.subscriber_id, {agg}"
    " FROM {ordered} GROUP BY e.subscriber_id"
)


def upgrade() -> None:
    op.create_table(
        "waiting_queues",
        sa.Column("subscriber_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("places", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("subscriber_id"),
    )
    postgres = op.get_bind().dialect.name == "postgresql"
    for statement in PG_UP if postgres else SQLITE_UP:
        op.execute(statement)
    queued = "enrollments e WHERE e.state = 'queued'"
    if postgres:
        agg, ordered = f"string_agg({_PG_ITEM}, ';' ORDER BY e.position, e.id)", queued
    else:  # group_concat follows the order of an ordered subquery
        agg = "group_concat(e.t, ';')"
        ordered = (
            f"(SELECT e.subscriber_id, {_SQLITE_ITEM} AS t FROM {queued}"
            " ORDER BY e.subscriber_id, e.position, e.id) e"
        )
    op.execute(BACKFILL.format(agg=agg, ordered=ordered))


def downgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    for statement in PG_DOWN if postgres else SQLITE_DOWN:
        op.execute(statement)
    op.drop_table("waiting_queues")
