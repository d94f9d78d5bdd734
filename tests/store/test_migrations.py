"""Migrations: upgrade on an empty SQLite and (when TEST_DATABASE_URL is set) PostgreSQL."""

from __future__ import annotations

from sqlalchemy import inspect

from newsletter.store import db
from newsletter.store.models import Base


def test_upgrade_creates_every_table(database_url: str) -> None:
    db.upgrade(database_url)  # already at head: a second upgrade is a no-op, not an error
    names = set(inspect(db.get_engine(database_url)).get_table_names())
    assert {t.name for t in Base.metadata.sorted_tables} <= names
    assert "alembic_version" in names


def test_upgrade_on_empty_sqlite(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'sub' / 'fresh.db'}"
    db.upgrade(url)
    uniques = inspect(db.get_engine(url)).get_unique_constraints("deliveries")
    assert any(
        set(u["column_names"]) == {"subscriber_id", "series_id", "part_number"} for u in uniques
    )
    db.dispose_all()
