"""Engines and sessions: one engine per URL, and list parameters on PostgreSQL."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import text

from newsletter.store import db


def test_one_engine_per_url(database_url: str) -> None:
    assert db.get_engine(database_url) is db.get_engine(database_url)


def test_lists_travel_as_arrays_with_nulls_and_unicode(database_url: str) -> None:
    engine = db.get_engine(database_url)
    if engine.dialect.name != "postgresql":
        assert engine.dialect.name == "sqlite"  # SQLite has no arrays; dispatch uses IN there
        return
    moment = dt.datetime(2027, 3, 9, 14, 0)
    with db.session_scope(database_url) as session:
        row = session.execute(
            text(
                "SELECT CAST(:i AS integer[]), CAST(:t AS timestamp[]), CAST(:s AS varchar[]),"
                " CAST(:e AS integer[]), 5 = ANY(CAST(:i AS integer[]))"
            ),
            {"i": [1, 5, None], "t": [moment, None], "s": ["Zoë", "x"], "e": []},
        ).one()
        assert tuple(row) == ([1, 5, None], [moment, None], ["Zoë", "x"], [], True)
        dumper = session.connection().connection.dbapi_connection.adapters.get_dumper(list, "s")  # type: ignore[union-attr]
        assert dumper.__name__ == "ListBinaryDumper"  # not the text format quoted in Python
