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


ADMIN_INDEXES = {  # 0007's (its ix_deliveries_status_sent is ix_deliveries_sent_at on PostgreSQL)
    "deliveries": {"ix_deliveries_series_part_status"},
    "provider_events": {"ix_provider_events_type_occurred"},
    "subscribers": {"ix_subscribers_status_paused", "ix_subscribers_created"},
    "enrollments": {"ix_enrollments_series_not_before"},
}


def _index_names(url: str) -> dict[str, set[str]]:
    found = inspect(db.get_engine(url))
    return {table: {i["name"] or "" for i in found.get_indexes(table)} for table in ADMIN_INDEXES}


def test_0007_adds_the_admin_indexes_and_takes_them_away_again(database_url: str) -> None:
    from alembic import command

    cfg = db.alembic_config(database_url)
    try:
        assert all(ADMIN_INDEXES[t] <= names for t, names in _index_names(database_url).items())
        command.downgrade(cfg, "0006")
        db.dispose_all()
        assert all(
            not (ADMIN_INDEXES[t] & names) for t, names in _index_names(database_url).items()
        )
    finally:
        db.upgrade(database_url)  # back at head for the tests after this one
        db.dispose_all()
    assert all(ADMIN_INDEXES[t] <= names for t, names in _index_names(database_url).items())


def test_the_models_declare_every_index_the_migrations_make(database_url: str) -> None:
    declared = {
        table.name: {i.name for i in table.indexes} for table in Base.metadata.sorted_tables
    }
    for table, names in _index_names(database_url).items():
        assert ADMIN_INDEXES[table] <= declared[table]
        assert ADMIN_INDEXES[table] <= names


def test_0008_gives_each_series_the_start_it_was_queued_with(database_url: str) -> None:
    """Before 0008 a start lived only on the enrollments made when the series was queued: the
    series takes the earliest of them; a series without one has none."""
    import datetime as dt

    from alembic import command
    from sqlalchemy import select

    from newsletter.store.models import ACTIVE, QUEUED, Enrollment, Series, Subscriber

    now = dt.datetime(2027, 3, 1, 12, tzinfo=dt.UTC)
    start = dt.date(2027, 3, 22)
    with db.session_scope(database_url) as session:
        series = [
            Series(slug=slug, title=slug, send_day=1, send_time="09:00") for slug in ("a", "b")
        ]
        readers = [
            Subscriber(public_id=f"p{i}", email=f"r{i}@example.org", email_key=f"r{i}",
                       timezone="UTC", status=ACTIVE, created_at=now, updated_at=now)
            for i in range(2)
        ]  # fmt: skip
        session.add_all(series + readers)
        session.flush()
        for reader, not_before in zip(readers, (start + dt.timedelta(days=7), start), strict=True):
            for s in series:
                session.add(
                    Enrollment(subscriber_id=reader.id, series_id=s.id, position=1, next_part=1,
                               state=QUEUED, not_before=not_before if s.slug == "a" else None,
                               created_at=now, updated_at=now)
                )  # fmt: skip
    cfg = db.alembic_config(database_url)
    try:
        command.downgrade(cfg, "0007")
        db.dispose_all()
    finally:
        db.upgrade(database_url)
        db.dispose_all()
    with db.session_scope(database_url) as session:
        found = dict(session.execute(select(Series.slug, Series.starts_on)).all())
    assert found == {"a": start, "b": None}


def _where(url: str, index: str) -> str | None:
    """The WHERE of an index as the database keeps it (None: a full index)."""
    from sqlalchemy import text

    engine = db.get_engine(url)
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            sql = conn.execute(
                text("SELECT sql FROM sqlite_master WHERE type = 'index' AND name = :n"),
                {"n": index},
            ).scalar_one()
        else:
            sql = conn.execute(
                text("SELECT indexdef FROM pg_indexes WHERE indexname = :n"), {"n": index}
            ).scalar_one()
    _, found, where = sql.partition(" WHERE ")
    return where.strip() if found else None


def test_0019_keeps_sent_rows_out_of_postgresqls_status_indexes_and_back_again(
    database_url: str,
) -> None:
    """At head, on PostgreSQL, ix_deliveries_sent_at holds sent rows only and
    ix_deliveries_status_updated only rows not sent; a downgrade to 0018 gives back the full
    (status, sent_at) and (status, updated_at). SQLite's stay full throughout."""
    from alembic import command

    postgres = database_url.startswith("postgresql")
    cfg = db.alembic_config(database_url)
    full, partial = "ix_deliveries_status_sent", "ix_deliveries_sent_at"
    updated = "ix_deliveries_status_updated"

    def sent_index() -> str:
        names = _index_names(database_url)["deliveries"]
        assert len(names & {full, partial}) == 1, names
        return full if full in names else partial

    try:
        if postgres:
            assert sent_index() == partial
            assert "= 'sent'" in (_where(database_url, partial) or "")
            assert "<> 'sent'" in (_where(database_url, updated) or "")
        else:
            assert sent_index() == full
            assert _where(database_url, full) is _where(database_url, updated) is None
        command.downgrade(cfg, "0018")
        db.dispose_all()
        assert sent_index() == full
        assert _where(database_url, full) is _where(database_url, updated) is None
    finally:
        db.upgrade(database_url)
        db.dispose_all()
    assert sent_index() == (partial if postgres else full)


def test_the_models_declare_0019s_indexes_per_database() -> None:
    """The models say what 0019 makes: on PostgreSQL the partial ones (WHERE included), on
    SQLite the full ones; each index made on one database only says so."""
    found = {i.name: i for i in Base.metadata.tables["deliveries"].indexes}
    sent, full = found["ix_deliveries_sent_at"], found["ix_deliveries_status_sent"]
    updated = found["ix_deliveries_status_updated"]
    assert [c.name for c in sent.columns] == ["sent_at"]
    assert [c.name for c in full.columns] == ["status", "sent_at"]
    assert str(sent.dialect_options["postgresql"]["where"]) == "status = 'sent'"
    assert str(updated.dialect_options["postgresql"]["where"]) == "status <> 'sent'"
    assert updated.dialect_options["sqlite"]["where"] is None
    assert sent._ddl_if is not None and sent._ddl_if.dialect == "postgresql"
    assert full._ddl_if is not None and full._ddl_if.dialect == "sqlite"
