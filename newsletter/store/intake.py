"""Set-based writes for an import: the keys seen so far in a temp table, new subscribers in bulk.

One `Intake` per import, on one connection held for the whole file (its temp tables live on that
connection), committed batch by batch by the caller. Nothing here holds rows between batches, so
memory stays bounded by the batch whatever the file's length; repeated addresses are found by the
temp table, not by a set in Python. PostgreSQL: new rows are `COPY`ed into a staging table and
merged with one `INSERT … SELECT … ON CONFLICT DO NOTHING RETURNING`; SQLite: the same, the
staging table filled with one executemany. A file that carries each person's own status,
choices and consent (an export) is written with one multi-row `INSERT … ON CONFLICT DO NOTHING
RETURNING` (`insert_standing`): its values differ row by row, so SQLAlchemy types them.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, NamedTuple

from sqlalchemy import bindparam, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from newsletter.store.json_list import json_list, select_json_list
from newsletter.store.models import WEEKLY, Subscriber

SEEN = "import_seen"
STAGE = "import_stage"
STAGE_COLUMNS = ("public_id", "email", "email_key", "name", "timezone", "requested_series")


class NewRow(NamedTuple):
    """One person to add, in the staging table's column order (what every row of the batch
    shares is kept apart: see `insert`). A plain tuple: it goes to COPY/executemany as it is."""

    public_id: str
    email: str
    email_key: str
    name: str | None
    timezone: str
    requested_series: str | None  # JSON text of the slugs chosen, None for every series


@dataclass(frozen=True)
class Common:
    """The columns every new row of one import shares."""

    status: str
    consent_method: str
    consent_at: dt.datetime | None
    consent_form: str | None
    confirmed_at: dt.datetime | None
    now: dt.datetime


class Standing(NamedTuple):
    """One person's own status, choices and consent evidence, as an import writes them
    (services.import_standing settles them from the file's cells)."""

    status: str
    cadence: str
    paused_until: dt.date | None
    takes_new_series: bool
    no_series: bool  # takes no series at all (requested_series is an empty list)
    consent_method: str | None
    consent_at: dt.datetime | None
    consent_ip: str | None
    consent_form: str | None
    consent_wording: str | None
    confirmed_at: dt.datetime | None
    unsubscribed_at: dt.datetime | None
    created_at: dt.datetime


STANDING_FIELDS = tuple(f for f in Standing._fields if f != "no_series")  # the columns written


class Intake:
    """One import's set-based reads and writes, on the session's one connection."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.postgres = session.get_bind().dialect.name == "postgresql"

    def _keys(self, keys: Sequence[str]) -> tuple[str, dict[str, Any]]:
        """A SELECT of these keys from one JSON parameter (store.json_list)."""
        return select_json_list(self.postgres, "keys"), {"keys": json_list(keys)}

    def first_seen(self, keys: Sequence[str]) -> set[str]:
        """The keys not met before in this import (distinct `keys`); records them as met."""
        if not keys:
            return set()
        select_keys, params = self._keys(keys)
        fresh = self.session.execute(
            # WHERE true: SQLite's parser needs it before ON CONFLICT in an INSERT … SELECT
            text(
                f"INSERT INTO {SEEN} (email_key) {select_keys} WHERE true "
                "ON CONFLICT DO NOTHING RETURNING email_key"
            ),
            params,
        ).scalars()
        return set(fresh.all())  # fetchall: one call, not one per row

    def existing(self, keys: Sequence[str]) -> set[str]:
        """The keys already on the list (each looked up in the unique index)."""
        if not keys:
            return set()
        select_keys, params = self._keys(keys)
        found = self.session.execute(
            text(f"SELECT email_key FROM subscribers WHERE email_key IN ({select_keys})"), params
        ).scalars()
        return set(found.all())

    def insert(self, rows: Sequence[NewRow], common: Common) -> dict[str, int]:
        """Add these people; {email_key: id} of those written (an address added meanwhile by
        someone else, e.g. a signup, is left alone and missing from the answer).

        The rows go into the staging table as plain text (PostgreSQL `COPY`, SQLite one
        executemany, no per-value work in SQLAlchemy), then one INSERT … SELECT adds the
        columns every row shares, typed once."""
        if not rows:
            return {}
        session = self.session
        session.execute(text(f"DELETE FROM {STAGE}"))
        values = rows
        if self.postgres:
            raw = session.connection().connection.driver_connection
            assert raw is not None
            with (
                raw.cursor() as cur,
                cur.copy(f"COPY {STAGE} ({', '.join(STAGE_COLUMNS)}) FROM STDIN") as copy,
            ):
                for value in values:
                    copy.write_row(value)
        else:
            marks = ", ".join("?" for _ in STAGE_COLUMNS)
            session.connection().exec_driver_sql(
                f"INSERT INTO {STAGE} ({', '.join(STAGE_COLUMNS)}) VALUES ({marks})", values
            )
        shared = _shared(common)
        series = "CAST(requested_series AS json)" if self.postgres else "requested_series"
        merge = text(
            f"INSERT INTO subscribers ({', '.join(STAGE_COLUMNS)}, {', '.join(shared)}) "
            f"SELECT public_id, email, email_key, name, timezone, {series}, "
            + ", ".join(f":{name}" for name in shared)
            # WHERE true: SQLite's parser needs it before ON CONFLICT in an INSERT … SELECT
            + f" FROM {STAGE} WHERE true ON CONFLICT DO NOTHING RETURNING email_key, id"
        ).bindparams(*(bindparam(name, type_=COLUMNS[name].type) for name in shared))
        return {key: sub_id for key, sub_id in session.execute(merge, shared).all()}

    def insert_standing(
        self, rows: Sequence[tuple[NewRow, Standing]], now: dt.datetime
    ) -> dict[str, int]:
        """`insert` for people who each carry their own standing; {email_key: id} of those
        written (an address added meanwhile is left alone)."""
        if not rows:
            return {}
        table = Subscriber.__table__
        dialect = postgresql if self.postgres else sqlite
        statement = (
            dialect.insert(table).on_conflict_do_nothing().returning(table.c.email_key, table.c.id)
        )
        values = [
            {
                "public_id": row.public_id,
                "email": row.email,
                "email_key": row.email_key,
                "name": row.name,
                "timezone": row.timezone,
                "requested_series": None
                if row.requested_series is None
                else json.loads(row.requested_series),
                **{name: getattr(standing, name) for name in STANDING_FIELDS},
                "updated_at": now,
            }
            for row, standing in rows
        ]
        found = self.session.connection().execute(statement, values).all()
        return {key: sub_id for key, sub_id in found}


COLUMNS = Subscriber.__table__.c


def _shared(common: Common) -> dict[str, Any]:
    return {
        "status": common.status,
        "cadence": WEEKLY,
        "takes_new_series": True,
        "consent_method": common.consent_method,
        "consent_at": common.consent_at,
        "consent_form": common.consent_form,
        "confirmed_at": common.confirmed_at,
        "created_at": common.now,
        "updated_at": common.now,
    }


@contextmanager
def intake(session: Session) -> Iterator[Intake]:
    """An Intake with its temp tables made (empty) on the session's connection, dropped after."""
    varchar = "varchar(320)"
    made = [
        f"CREATE TEMP TABLE IF NOT EXISTS {SEEN} (email_key {varchar} PRIMARY KEY)",
        f"CREATE TEMP TABLE IF NOT EXISTS {STAGE} (public_id varchar(32), email {varchar}, "
        f"email_key {varchar}, name varchar(100), timezone varchar(64), requested_series text)",
    ]
    for statement in made:
        session.execute(text(statement))
    session.execute(text(f"DELETE FROM {SEEN}"))
    session.commit()
    try:
        yield Intake(session)
    finally:
        session.rollback()
        session.execute(text(f"DROP TABLE IF EXISTS {SEEN}"))
        session.execute(text(f"DROP TABLE IF EXISTS {STAGE}"))
        session.commit()
