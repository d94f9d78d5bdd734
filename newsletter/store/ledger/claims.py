"""Claims: ledger rows made claimed for the due (new or retry -> claimed), as plan takes them."""

from __future__ import annotations

import datetime as dt
from typing import Any, NamedTuple

from sqlalchemy import select, text, update
from sqlalchemy.orm import Session

from newsletter.store import pg_array
from newsletter.store.ledger.dialect import among, id_range, naive_utc, sqlite_stored, status_is
from newsletter.store.ledger.rows import Claim
from newsletter.store.models import CLAIMED, RETRY, Delivery

# PostgreSQL, one statement a round: retry rows of the wanted keys whose time has come taken back
# (retry -> claimed, compare-and-set), and a claimed row inserted for every other key (ON CONFLICT
# DO NOTHING: the unique constraint decides). A taken key is left out of the INSERT, so a retry
# round costs no INSERT that conflicts 1,000 times. `k` says which part of the statement made
# the row: 't' taken back (its crash count read), 'i' inserted.
_PG_CLAIM_ROUND = text(
    "WITH w AS (SELECT * FROM unnest(CAST(:s AS integer[]), CAST(:se AS integer[]),"
    " CAST(:p AS integer[]), CAST(:d AS timestamp[])) AS t(s, se, p, d)),"
    " taken AS (UPDATE deliveries SET status = :claimed, retry_at = :now, updated_at = :now"
    " FROM w WHERE deliveries.subscriber_id = w.s AND deliveries.series_id = w.se"
    " AND deliveries.part_number = w.p AND deliveries.status = :retry"
    " AND (deliveries.retry_at IS NULL OR deliveries.retry_at <= :now)"
    " RETURNING deliveries.id, deliveries.subscriber_id, deliveries.series_id,"
    " deliveries.part_number, deliveries.crashes),"
    " made AS (INSERT INTO deliveries (subscriber_id, series_id, part_number, status,"
    " scheduled_for, attempts, retry_at, created_at, updated_at)"
    " SELECT w.s, w.se, w.p, :claimed, w.d, 0, :now, :now, :now FROM w"
    " WHERE NOT EXISTS (SELECT 1 FROM taken WHERE taken.subscriber_id = w.s"
    " AND taken.series_id = w.se AND taken.part_number = w.p)"
    " ON CONFLICT (subscriber_id, series_id, part_number) DO NOTHING"
    " RETURNING id, subscriber_id, series_id, part_number)"
    " SELECT 't', id, subscriber_id, series_id, part_number, crashes FROM taken"
    " UNION ALL SELECT 'i', id, subscriber_id, series_id, part_number, 0 FROM made"
)

Key = tuple[int, int, int]

_PG_CLAIMS = text(
    "INSERT INTO deliveries (subscriber_id, series_id, part_number, status, scheduled_for,"
    " attempts, retry_at, created_at, updated_at)"
    " SELECT t.s, t.se, t.p, :status, t.d, 0, :now, :now, :now"
    " FROM unnest(CAST(:s AS integer[]), CAST(:se AS integer[]), CAST(:p AS integer[]),"
    " CAST(:d AS timestamp[])) AS t(s, se, p, d)"
    " ON CONFLICT (subscriber_id, series_id, part_number) DO NOTHING"
    " RETURNING id, subscriber_id, series_id, part_number"
)


def claim_round(
    session: Session, wanted: dict[Key, Claim], now: dt.datetime
) -> tuple[dict[Key, tuple[int, int]], dict[Key, int]]:
    """PostgreSQL: the round's claims in one statement (_PG_CLAIM_ROUND): retry rows of these
    keys whose time has come -> claimed by compare-and-set, matched on the exact (subscriber,
    series, part) triples, and a new claimed row for every other key that has none.
    Returns ({key: (delivery id, crashes)} taken back, {key: new delivery id}); a key in
    neither already has a row (sent, in flight, or a retry not due yet)."""
    at = naive_utc(now)
    rows = session.execute(
        _PG_CLAIM_ROUND,
        {
            **_pg_keys(wanted, now),
            "claimed": CLAIMED,
            "retry": RETRY,
            "now": at,
        },
    ).all()
    taken: dict[Key, tuple[int, int]] = {}
    made: dict[Key, int] = {}
    for kind, i, s, se, p, crashes in rows:
        if kind == "t":
            taken[(s, se, p)] = (i, crashes)
        else:
            made[(s, se, p)] = i
    return taken, made


def _pg_keys(wanted: dict[Key, Claim], now: dt.datetime) -> dict[str, str]:
    """The wanted keys and their due times as the four arrays the claim statements unnest."""
    keys = list(wanted)
    return {
        "s": pg_array.ints([k[0] for k in keys]),
        "se": pg_array.ints([k[1] for k in keys]),
        "p": pg_array.ints([k[2] for k in keys]),
        "d": pg_array.stamps([e.next_due_at or now for e in wanted.values()]),
    }


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
        params = {**_pg_keys(wanted, now), "status": CLAIMED, "now": naive_utc(now)}
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


_SQLITE_TAKE_BACK = (
    "WITH w(s, se, p) AS (VALUES {rows})"
    " UPDATE deliveries SET status = ?, retry_at = ?, updated_at = ? FROM w"
    " WHERE deliveries.subscriber_id = w.s AND deliveries.series_id = w.se"
    " AND deliveries.part_number = w.p AND deliveries.status = ?"
    " AND (deliveries.retry_at IS NULL OR deliveries.retry_at <= ?)"
    " RETURNING deliveries.id, deliveries.subscriber_id, deliveries.series_id,"
    " deliveries.part_number, deliveries.crashes"
)


def take_back_keys(
    session: Session, keys: list[Key], now: dt.datetime
) -> dict[Key, tuple[int, int]]:
    """SQLite: retry rows of these (subscriber, series, part) keys whose time has come ->
    claimed (claim time `now`) by compare-and-set, one statement per 1,000 keys (the keys an
    INSERT of claims ran into: a retry round reads none of those rows first).
    {key: (delivery id, crashes)}; a row another tick took first is not among them."""
    at = sqlite_stored(session)(now)
    taken: dict[Key, tuple[int, int]] = {}
    for start in range(0, len(keys), SQLITE_ROWS):
        part = keys[start : start + SQLITE_ROWS]
        values: list[Any] = [v for key in part for v in key]
        session.flush()
        result = session.connection().exec_driver_sql(
            _SQLITE_TAKE_BACK.format(rows=",".join(["(?,?,?)"] * len(part))),
            (*values, CLAIMED, at, at, RETRY, at),
        )
        taken.update({(s, se, p): (i, crashes) for i, s, se, p, crashes in result})
    return taken


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
