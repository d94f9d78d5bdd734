"""Engines and sessions: one engine per URL, and list parameters on PostgreSQL."""

from __future__ import annotations

import datetime as dt
import sqlite3
from pathlib import Path

import pytest
from paths import file_mode
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


@pytest.mark.usefixtures("umask_022")
def test_a_new_sqlite_database_and_its_wal_and_shm_are_0600(tmp_path: Path) -> None:
    path = tmp_path / "data" / "deeper" / "newsletter.db"
    url = f"sqlite:///{path}"
    try:
        with db.get_engine(url).connect() as conn:
            conn.execute(text("CREATE TABLE t (x integer)"))
            conn.execute(text("INSERT INTO t VALUES (1)"))
            conn.commit()
            wal, shm = Path(f"{path}-wal"), Path(f"{path}-shm")
            assert wal.exists() and shm.exists()  # WAL mode, the connection still open
            assert file_mode(path) == file_mode(wal) == file_mode(shm) == 0o600
    finally:
        db.dispose_all()
    assert file_mode(path.parent) == file_mode(path.parent.parent) == 0o700


@pytest.mark.usefixtures("umask_022")
def test_an_existing_loose_database_is_tightened_when_opened(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    sqlite3.connect(path).execute("CREATE TABLE t (x integer)").connection.close()
    wal = Path(f"{path}-wal")
    wal.write_bytes(b"")  # an empty WAL left beside it, as loose as the file
    for loose in (path, wal):
        loose.chmod(0o644)
    try:
        with db.get_engine(f"sqlite:///{path}").connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM t")).scalar() == 0
            assert file_mode(path) == 0o600 and file_mode(wal) == 0o600
    finally:
        db.dispose_all()
