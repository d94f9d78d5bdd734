"""Backups of the database and restoring them into an empty one (SQLite and PostgreSQL).

SQLite: the online backup API (`sqlite3.Connection.backup`), safe while web, worker and beat
write; the copy is checked (`PRAGMA integrity_check`) and renamed into place only when whole, as
one self-contained file (no -wal beside it). PostgreSQL: `pg_dump --format=custom`, whose command
line is always shown (the password never: it travels in PGPASSWORD); without pg_dump on this
machine nothing is run and the error shows the command to run elsewhere. Restores go only into
an empty database (no tables at all), so a restore can never mix two histories: a reader's ledger
rows are either all from the backup or none are. Backups and restored files are created 0600 (in
folders created 0700) before a byte goes in (core.private_files), whatever the umask.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import subprocess
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import inspect
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import SQLAlchemyError

from newsletter.core.private_files import private_folder, touch_private
from newsletter.store import db

SQLITE_MAGIC = b"SQLite format 3\x00"
PGDUMP_MAGIC = b"PGDMP"  # pg_dump's custom format
Announce = Callable[[str], None]


class BackupError(Exception):
    """A backup or restore that could not be done; the message says what to do."""


def _quiet(_: str) -> None:
    pass


def _is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def _sqlite_path(url: str) -> Path:
    name = make_url(url).database
    if not name or name == ":memory:":
        raise BackupError(f"{url} is not a database file")
    return Path(name)


def _magic(path: Path) -> bytes:
    with path.open("rb") as handle:
        return handle.read(16)


# --- SQLite --------------------------------------------------------------------------------


def _sqlite_tables(conn: sqlite3.Connection) -> list[str]:
    rows = conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
    ).fetchall()
    return [str(row[0]) for row in rows]


def _sqlite_summary(path: Path) -> str:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        tables = set(_sqlite_tables(conn))
        parts = []
        if "alembic_version" in tables:
            row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
            parts.append(f"schema {row[0] if row else '?'}")
        for table in ("subscribers", "deliveries"):
            if table in tables:
                count = conn.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0]
                parts.append(f"{count} {table}")
        return ", ".join(parts) or "no tables"
    finally:
        conn.close()


def _copy_sqlite(source: sqlite3.Connection, target: Path) -> None:
    """Copy `source` into a new file `target` (written beside it, renamed when whole)."""
    partial = target.with_name(target.name + ".partial")
    partial.unlink(missing_ok=True)
    touch_private(partial)  # 0600 before a byte is in it; SQLite's journal copies its mode
    dest = sqlite3.connect(partial)
    try:
        source.backup(dest)
        dest.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
        result = dest.execute("PRAGMA integrity_check").fetchone()
        if not result or result[0] != "ok":
            raise BackupError(f"the copy failed its integrity check: {result}")
    finally:
        dest.close()
    os.replace(partial, target)


def _backup_sqlite(url: str, path: Path, announce: Announce) -> str:
    source_path = _sqlite_path(url)
    if not source_path.exists():
        raise BackupError(f"no database at {source_path}: nothing to back up")
    announce(f"SQLite online backup of {source_path} to {path}")
    private_folder(path.parent)
    source = sqlite3.connect(source_path, timeout=30)
    try:
        _copy_sqlite(source, path)
    finally:
        source.close()
    return f"backed up {source_path} to {path} ({_sqlite_summary(path)})"


def _restore_sqlite(url: str, path: Path, announce: Announce) -> str:
    target = _sqlite_path(url)
    if target.exists() and target.stat().st_size > 0:
        conn = sqlite3.connect(target, timeout=30)
        try:
            tables = _sqlite_tables(conn)
        finally:
            conn.close()
        if tables:
            raise BackupError(_not_empty(str(target), tables))
    for leftover in (
        target.with_name(target.name + "-wal"),
        target.with_name(target.name + "-shm"),
    ):
        leftover.unlink(missing_ok=True)  # of an erased database: never replay it over the restore
    announce(f"SQLite restore of {path} into {target}")
    private_folder(target.parent)
    source = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        _copy_sqlite(source, target)
    finally:
        source.close()
    return f"restored {path} into {target} ({_sqlite_summary(target)})"


# --- PostgreSQL ----------------------------------------------------------------------------


def _libpq(url: str) -> tuple[str, dict[str, str]]:
    """The libpq URL without the password (safe to print) and the environment carrying it."""
    parsed: URL = make_url(url).set(drivername="postgresql")
    env = dict(os.environ)
    if parsed.password is not None:
        env["PGPASSWORD"] = str(parsed.password)
        parsed = parsed._replace(password=None)  # URL.set() ignores None
    return parsed.render_as_string(hide_password=False), env


def pg_dump_command(url: str, path: Path) -> list[str]:
    """The pg_dump command line a PostgreSQL backup runs (no password in it)."""
    dsn, _ = _libpq(url)
    return [
        "pg_dump",
        "--format=custom",
        "--no-owner",
        "--no-privileges",
        f"--file={path}",
        f"--dbname={dsn}",
    ]


def pg_restore_command(url: str, path: Path) -> list[str]:
    dsn, _ = _libpq(url)
    return [
        "pg_restore",
        "--no-owner",
        "--no-privileges",
        "--exit-on-error",
        "--single-transaction",
        f"--dbname={dsn}",
        str(path),
    ]


def _shown(command: list[str], url: str) -> str:
    prefix = "PGPASSWORD=… " if make_url(url).password is not None else ""
    return prefix + " ".join(command)


def _run(command: list[str], url: str, announce: Announce) -> None:
    shown = _shown(command, url)
    announce(f"running: {shown}")
    if shutil.which(command[0]) is None:
        raise BackupError(
            f"{command[0]} is not installed here (Debian: apt-get install postgresql-client, the "
            f"server's major version or newer); run it where it is:\n  {shown}"
        )
    _, env = _libpq(url)
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise BackupError(f"{command[0]} failed ({done.returncode}): {done.stderr.strip()[:800]}")


def _backup_postgres(url: str, path: Path, announce: Announce) -> str:
    partial = path.with_name(path.name + ".partial")
    partial.unlink(missing_ok=True)
    try:
        touch_private(partial)  # pg_dump truncates and writes it, keeping 0600
        _run(pg_dump_command(url, partial), url, announce)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return f"backed up the PostgreSQL database to {path} ({path.stat().st_size} bytes)"


def _restore_postgres(url: str, path: Path, announce: Announce) -> str:
    try:
        tables = inspect(db.get_engine(url)).get_table_names()
    except SQLAlchemyError as exc:
        raise BackupError(
            f"cannot open the database {make_url(url).database} ({type(exc).__name__}): create "
            "it first (an empty one) and check NEWSLETTER_DATABASE_URL"
        ) from None
    finally:
        db.dispose_all()
    if tables:
        raise BackupError(_not_empty(make_url(url).database or url, tables))
    _run(pg_restore_command(url, path), url, announce)
    return f"restored {path} into the PostgreSQL database {make_url(url).database}"


# --- both ----------------------------------------------------------------------------------


def _not_empty(where: str, tables: list[str]) -> str:
    return (
        f"{where} is not empty ({len(tables)} tables, e.g. {', '.join(sorted(tables)[:3])}): "
        "restore only into an empty database, so the backup's history is never mixed with "
        "another; move it aside (SQLite) or create a new database (PostgreSQL), and do not run "
        "`newsletter init` before the restore"
    )


def backup(url: str, path: Path, announce: Announce = _quiet) -> str:
    """Write a backup of the database at `url` to `path`; returns a one-line summary."""
    path = Path(path)
    if _is_sqlite(url):
        return _backup_sqlite(url, path, announce)
    return _backup_postgres(url, path, announce)


def restore(url: str, path: Path, announce: Announce = _quiet) -> str:
    """Restore `path` (from `backup`) into the EMPTY database at `url`; BackupError otherwise."""
    path = Path(path)
    if not path.is_file():
        raise BackupError(f"no backup file at {path}")
    magic = _magic(path)
    sqlite = _is_sqlite(url)
    if sqlite and not magic.startswith(SQLITE_MAGIC):
        kind = "a PostgreSQL dump" if magic.startswith(PGDUMP_MAGIC) else "not a SQLite database"
        raise BackupError(f"{path} is {kind}; NEWSLETTER_DATABASE_URL is SQLite")
    if not sqlite and not magic.startswith(PGDUMP_MAGIC):
        kind = "a SQLite database" if magic.startswith(SQLITE_MAGIC) else "not a pg_dump file"
        raise BackupError(f"{path} is {kind}; NEWSLETTER_DATABASE_URL is PostgreSQL")
    db.dispose_all()  # no pooled connection may outlive the database it pointed at
    try:
        return (_restore_sqlite if sqlite else _restore_postgres)(url, path, announce)
    finally:
        with contextlib.suppress(Exception):
            db.dispose_all()
