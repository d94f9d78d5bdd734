"""Backups: backup -> erase the database -> restore -> tick sends nothing twice (SQLite, and
PostgreSQL through pg_dump/pg_restore when TEST_DATABASE_URL is set); restores only into an empty
database; the pg_dump command is shown (never the password) and named when pg_dump is missing."""

from __future__ import annotations

import os
import shutil
import sqlite3
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from engine_support import add_person, cli_tick, enrollments, ledger, outbox_mails, ship, utc
from paths import file_mode, free_port
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from newsletter.cli import app
from newsletter.core.config import Settings, get_settings, load_settings
from newsletter.store import backup as store_backup
from newsletter.store import db

runner = CliRunner()
READERS = 100  # one batch; the chaos tests cover full batches of 1,000


def ok(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture
def empty_database(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The URL an erased database comes back at: the SQLite file deleted, or (PostgreSQL) a new,
    empty database on the same server. NEWSLETTER_DATABASE_URL points at it from now on."""
    url = settings.database_url
    admin = None
    if make_url(url).get_backend_name() == "sqlite":
        new_url = url
    else:
        name = f"nl_restore_{uuid.uuid4().hex[:8]}"
        admin = create_engine(url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        new_url = make_url(url).set(database=name).render_as_string(hide_password=False)
    yield new_url
    db.dispose_all()
    if admin is not None:
        with admin.connect() as conn:
            conn.execute(
                text(f'DROP DATABASE IF EXISTS "{make_url(new_url).database}" WITH (FORCE)')
            )
        admin.dispose()


def erase(settings: Settings, new_url: str, monkeypatch: pytest.MonkeyPatch) -> Settings:
    db.dispose_all()
    if make_url(settings.database_url).get_backend_name() == "sqlite":
        path = Path(str(make_url(settings.database_url).database))
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        assert not path.exists()
    monkeypatch.setenv("NEWSLETTER_DATABASE_URL", new_url)
    get_settings.cache_clear()
    return load_settings()


def test_backup_erase_restore_then_tick_sends_nothing_twice(
    settings: Settings, empty_database: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if make_url(settings.database_url).get_backend_name() != "sqlite":
        for tool in ("pg_dump", "pg_restore"):
            if not any(Path(d, tool).exists() for d in os.environ["PATH"].split(os.pathsep)):
                pytest.skip(f"{tool} is not installed (test_pg_dump_command covers the command)")
    now = utc(2026, 11, 2, 10)
    ship(settings, now)
    readers = [add_person(settings, now) for _ in range(READERS)]
    first = enrollments(settings, readers[0])[0].next_due_at
    assert first is not None
    assert cli_tick(first)["sent"] == READERS  # part 1 to everyone, before the backup

    path = tmp_path / "backups" / "newsletter.backup"
    out = ok("backup", str(path))
    assert str(path) in out and path.stat().st_size > 0
    assert not path.with_name(path.name + ".partial").exists()
    if make_url(settings.database_url).get_backend_name() == "sqlite":
        assert f"{READERS} subscribers" in out and f"{READERS} deliveries" in out

    restored = erase(settings, empty_database, monkeypatch)
    out = ok("restore", str(path))
    assert "restored" in out and "newsletter init" in out
    ok("init")  # what the drill says next: a no-op on a current schema, nothing queued again
    assert cli_tick(first)["sent"] == 0  # part 1 again, Redis as it was: nobody gets it twice
    # A new machine: Redis starts empty and the next tick rebuilds it from the restored database.
    client = redis.Redis.from_url(str(settings.redis_url))
    keys = list(client.scan_iter(match=f"{settings.redis_prefix}*"))
    assert keys
    client.delete(*keys)
    client.close()
    assert cli_tick(first) == {"due": 0, "sent": 0, "retry": 0, "skipped": 0, "failed": 0}
    second = enrollments(restored, readers[0])[0].next_due_at
    assert second is not None and second > first
    summary = cli_tick(second)
    assert summary["sent"] == READERS and summary["failed"] == 0  # part 2, once each

    rows = ledger(restored)
    per_reader = Counter((sub, series, part) for sub, series, part, status, _ in rows)
    assert set(per_reader.values()) == {1} and len(rows) == 2 * READERS
    assert {status for *_, status, _ in rows} == {"sent"}
    mails = outbox_mails(restored)
    seen = Counter((str(m["To"]), str(m["Subject"])) for m in mails)
    assert len(mails) == 2 * READERS and set(seen.values()) == {1}  # no one got a part twice


def test_restore_refuses_a_database_that_is_not_empty(settings: Settings, tmp_path: Path) -> None:
    ship(settings, utc(2026, 11, 2, 10))
    path = tmp_path / "b.backup"
    if make_url(settings.database_url).get_backend_name() == "sqlite":
        ok("backup", str(path))
    else:
        path.write_bytes(b"PGDMP" + b"\0" * 64)  # never read: the check comes first
    result = runner.invoke(app, ["restore", str(path)])
    assert result.exit_code == 1
    assert (
        "is not empty" in result.output and "restore only into an empty database" in result.output
    )
    assert ledger(settings) == []  # and nothing was touched
    again = runner.invoke(app, ["backup", str(path)])
    assert again.exit_code == 1 and "exists" in again.output  # a backup never overwrites one


def test_restore_names_the_wrong_kind_of_file(tmp_path: Path) -> None:
    sqlite_url = f"sqlite:///{tmp_path / 'new.db'}"
    dump = tmp_path / "dump.backup"
    dump.write_bytes(b"PGDMP\x01\x0e\x00" + b"\0" * 32)
    with pytest.raises(store_backup.BackupError, match=r"is a PostgreSQL dump; .* is SQLite"):
        store_backup.restore(sqlite_url, dump)
    notes = tmp_path / "notes.txt"
    notes.write_text("not a backup")
    with pytest.raises(store_backup.BackupError, match="not a SQLite database"):
        store_backup.restore(sqlite_url, notes)
    with pytest.raises(store_backup.BackupError, match="no backup file"):
        store_backup.restore(sqlite_url, tmp_path / "missing.backup")
    assert not (tmp_path / "new.db").exists()
    nowhere = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/nl_none"
    sqlite_copy = tmp_path / "copy.db"
    store_backup.backup(f"sqlite:///{_one_table(tmp_path / 'live.db')}", sqlite_copy)
    with pytest.raises(store_backup.BackupError, match=r"is a SQLite database; .* PostgreSQL"):
        store_backup.restore(nowhere, sqlite_copy)
    with pytest.raises(store_backup.BackupError, match="cannot open the database nl_none"):
        store_backup.restore(nowhere, dump)


def _one_table(path: Path) -> Path:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE t (x)")
    conn.commit()
    conn.close()
    return path


def test_sqlite_backup_is_one_consistent_file_while_a_writer_holds_the_wal(
    tmp_path: Path,
) -> None:
    source = tmp_path / "live.db"
    writer = sqlite3.connect(source)
    writer.execute("PRAGMA journal_mode=WAL")
    writer.execute("CREATE TABLE subscribers (id INTEGER PRIMARY KEY)")
    writer.executemany("INSERT INTO subscribers VALUES (?)", [(i,) for i in range(500)])
    writer.commit()  # committed pages still in the -wal file, not yet in live.db
    writer.execute("BEGIN")
    writer.execute("INSERT INTO subscribers VALUES (1000)")  # uncommitted: not in the backup
    copy = tmp_path / "copy.db"
    summary = store_backup.backup(f"sqlite:///{source}", copy)
    writer.rollback()
    writer.close()
    assert "500 subscribers" in summary
    assert not Path(f"{copy}-wal").exists()
    conn = sqlite3.connect(copy)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    assert conn.execute("SELECT count(*), max(id) FROM subscribers").fetchone() == (500, 499)
    conn.close()


def test_pg_dump_command_is_shown_without_the_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = "postgresql+psycopg://newsletter:s3cr3t-pass@db.internal:5432/newsletter"
    path = tmp_path / "nightly.dump"
    command = store_backup.pg_dump_command(url, path)
    assert command == [
        "pg_dump",
        "--format=custom",
        "--no-owner",
        "--no-privileges",
        f"--file={path}",
        "--dbname=postgresql://newsletter@db.internal:5432/newsletter",
    ]
    restore = store_backup.pg_restore_command(url, path)
    assert restore[0] == "pg_restore" and "--single-transaction" in restore
    assert all("s3cr3t" not in part for part in command + restore)
    # Without pg_dump on this machine: the command is printed, nothing runs, exit 1.
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    monkeypatch.setenv("NEWSLETTER_DATABASE_URL", url)
    get_settings.cache_clear()
    result = runner.invoke(app, ["backup", str(path)])
    get_settings.cache_clear()
    assert result.exit_code == 1
    assert "PGPASSWORD=… pg_dump --format=custom" in result.output
    assert "pg_dump is not installed here" in result.output
    assert "s3cr3t" not in result.output and not path.exists()


@pytest.mark.usefixtures("umask_022")
def test_backups_and_restored_files_are_0600_in_0700_folders(
    settings: Settings, tmp_path: Path
) -> None:
    sqlite = make_url(settings.database_url).get_backend_name() == "sqlite"
    if not sqlite and shutil.which("pg_dump") is None:
        pytest.skip("pg_dump is not installed (test_pg_dump_command covers the command)")
    ship(settings, utc(2026, 11, 2, 10))
    path = tmp_path / "backups" / "nightly" / "newsletter.backup"
    ok("backup", str(path))
    assert file_mode(path) == 0o600
    assert file_mode(path.parent) == file_mode(path.parent.parent) == 0o700
    if sqlite:  # a restore writes the database file itself
        target = tmp_path / "restored" / "newsletter.db"
        store_backup.restore(f"sqlite:///{target}", path)
        assert file_mode(target) == 0o600 and file_mode(target.parent) == 0o700
