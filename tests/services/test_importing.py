"""The streamed, set-based CSV import: repeats found across batches, a constant number of SQL
statements per batch, memory bounded by the batch, and export -> import round trips."""

from __future__ import annotations

import csv
import datetime as dt
import io
import tracemalloc
from pathlib import Path

import pytest
from engine_support import enrollment_facts
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from sqlalchemy import delete, event, select

from newsletter.content import series as content
from newsletter.core.config import Settings
from newsletter.engine import series_queue
from newsletter.queue.dueset import RedisQueue
from newsletter.services import export, importing, roster
from newsletter.store import series as series_store
from newsletter.store.db import get_engine, session_scope
from newsletter.store.models import ACTIVE, Enrollment, Series, Subscriber

NOW = dt.datetime(2026, 3, 2, 12, 0, tzinfo=dt.UTC)


@pytest.fixture
def live(settings: Settings) -> Settings:
    """The shipped series synced and queued (live), like a fresh `newsletter init`."""
    with session_scope(settings.database_url) as session:
        series_store.sync(session, content.load_all(settings.schedules_dir))
        for slug in session.scalars(select(Series.slug).order_by(Series.order)):
            series_queue.queue_series(session, slug, None, NOW)
    return settings


def run(settings: Settings, text: str, **options: object) -> importing.ImportReport:
    return importing.import_csv(
        settings,
        io.BytesIO(text.encode("utf-8")),
        **{"dry_run": False, "confirmed": True, "now": NOW, **options},  # type: ignore[arg-type]
    )


def test_a_repeat_in_a_later_batch_is_a_duplicate_and_the_first_row_wins(
    live: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(importing, "BATCH_ROWS", 100)
    lines = [f"r{i}@example.org,Reader {i}" for i in range(250)]
    lines += ["R7@Example.org,Seven again", "r120@example.org,Later", "r249@example.org,Last"]
    text = "email,name\n" + "\n".join(lines) + "\n"
    dry = run(live, text, dry_run=True)
    assert (dry.rows, dry.new, dry.duplicates, dry.existing) == (253, 250, 3, 0)
    done = run(live, text)
    assert (done.rows, done.new, done.duplicates, done.existing) == (253, 250, 3, 0)
    with session_scope(live.database_url) as session:
        names = dict(session.execute(select(Subscriber.email_key, Subscriber.name)).all())
    assert len(names) == 250 and names["r7@example.org"] == "Reader 7"
    again = run(live, text)  # a second import finds everyone on the list
    assert (again.new, again.existing, again.duplicates) == (0, 250, 3)


def test_an_import_costs_a_constant_number_of_statements_per_batch(
    live: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(importing, "BATCH_ROWS", 1000)
    statements: list[str] = []

    def count(_conn: object, _cursor: object, sql: str, *_: object) -> None:
        statements.append(sql)

    engine = get_engine(live.database_url)

    def statements_for(rows: int, start: int) -> int:
        text = "email\n" + "".join(f"s{start + i}@example.org\n" for i in range(rows))
        statements.clear()
        event.listen(engine, "before_cursor_execute", count)
        try:
            report = run(live, text)
        finally:
            event.remove(engine, "before_cursor_execute", count)
        assert report.new == rows
        return len(statements)

    one = statements_for(1000, 0)
    four = statements_for(4000, 10_000)
    per_batch = (four - one) / 3
    # first-seen (2 on SQLite, 1 on PostgreSQL), existing, anyone erased?, stage (clear, fill),
    # merge, enrollments (the series, their parts, the zone groups, the active rows, the queued
    # rows), commit, and Redis's mirror of the due enrollments: all per batch, none per row
    assert per_batch <= 14, (one, four, statements[:20])
    assert one <= 30


@pytest.mark.slow  # 10,000-row scale work (the longest non-process tests): not in `make check`
def test_memory_is_bounded_by_the_batch_not_the_file(live: Settings, tmp_path: Path) -> None:
    def write(path: Path, rows: int) -> Path:
        with path.open("w", encoding="utf-8") as f:
            f.write("email,name,timezone\n")
            for i in range(rows):
                # every 1,000th row repeats one from far earlier (another batch)
                email = f"m{i // 1000}@example.org" if i % 1000 == 999 else f"m{i}@example.org"
                f.write(f"{email},Reader {i},UTC\n")
        return path

    small = write(tmp_path / "small.csv", importing.BATCH_ROWS)
    big = write(tmp_path / "big.csv", 8 * importing.BATCH_ROWS)

    def peak(path: Path) -> tuple[importing.ImportReport, int]:
        tracemalloc.start()
        try:
            report = importing.import_csv(live, path, dry_run=True, now=NOW)
            return report, tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    peak(small)  # warm: lazy imports, caches
    _, peak_small = peak(small)
    report, peak_big = peak(big)
    rows = 8 * importing.BATCH_ROWS
    assert (report.rows, report.duplicates, report.new) == (rows, rows // 1000, rows - rows // 1000)
    # eight times the rows of one batch, about the same peak
    assert peak_big < peak_small * 1.3 + 1024 * 1024, (peak_small, peak_big)


FORMULAS = {
    "f1@example.org": '=HYPERLINK("http://x","y")',
    "f2@example.org": "+1+2",
    "f3@example.org": "-2+3",
    "f4@example.org": "@SUM(A1)",
    "f5@example.org": "'Twas a plain name",
    "f6@example.org": "Plain = name",
}


def test_export_then_import_gives_back_the_names_the_export_neutralised(
    live: Settings,
) -> None:
    text = "email,name\n" + "".join(
        f'{email},"{name.replace(chr(34), chr(34) * 2)}"\n' for email, name in FORMULAS.items()
    )
    assert run(live, text).new == len(FORMULAS)
    exported = "".join(export.export_csv(live))
    assert "'=HYPERLINK" in exported and "'+1+2" in exported  # neutralised in the file
    with session_scope(live.database_url) as session:
        session.execute(delete(Enrollment))
        session.execute(delete(Subscriber))
    with session_scope(live.database_url) as session:
        assert RedisQueue(live).rebuild(session) == 0  # Redis follows the emptied list
    report = importing.import_csv(
        live, io.BytesIO(exported.encode("utf-8")), dry_run=False, confirmed=True, now=NOW
    )
    assert (report.new, report.invalid) == (len(FORMULAS), [])
    with session_scope(live.database_url) as session:
        back = dict(session.execute(select(Subscriber.email, Subscriber.name)).all())
        statuses = set(session.scalars(select(Subscriber.status)))
    assert back == FORMULAS
    assert statuses == {ACTIVE}
    queue = RedisQueue(live)
    assert queue.redis.zcard(queue.due_key) == len(FORMULAS)


def _enrollments_by_address(settings: Settings, keys: list[str]) -> list[list[tuple[object, ...]]]:
    """Every enrollment column but the ids and `updated_at` (the one-by-one path updates its
    ACTIVE row after writing it: the column's onupdate stamps the wall clock), per address in
    the order given, per position."""
    with session_scope(settings.database_url) as session:
        found = session.execute(
            select(Subscriber.email_key, Enrollment)
            .join(Enrollment, Enrollment.subscriber_id == Subscriber.id)
            .where(Subscriber.email_key.in_(keys))
            .order_by(Enrollment.position)
        ).all()
    rows: dict[str, list[tuple[object, ...]]] = {key: [] for key in keys}
    for key, e in found:
        rows[key].append(enrollment_facts(e))
    return [rows[key] for key in keys]


def test_an_import_enrolls_exactly_as_adding_each_person_by_hand(live: Settings) -> None:
    """The set-based enrollment of an import (engine.enrollment) writes the same rows, field by
    field, as the one-person path (roster.add_subscriber -> schedule.enroll), for every zone;
    and Redis is told each due part."""
    zones = ["UTC", "Europe/London", "America/New_York", "Asia/Kolkata", "Pacific/Chatham", ""]
    imported = [f"imp{i}@example.org" for i in range(len(zones))]
    by_hand = [f"hand{i}@example.org" for i in range(len(zones))]
    text = "email,timezone\n" + "".join(f"{e},{z}\n" for e, z in zip(imported, zones, strict=True))
    assert run(live, text).new == len(zones)
    for email, zone in zip(by_hand, zones, strict=True):
        roster.add_subscriber(live, email=email, timezone=zone or None, confirmed=True, now=NOW)
    expected = _enrollments_by_address(live, by_hand)
    assert _enrollments_by_address(live, imported) == expected
    assert all(rows and rows[0][4] == "active" for rows in expected)
    queue = RedisQueue(live)
    assert queue.redis.zcard(queue.due_key) == 2 * len(zones)


# --- reasons never repeat a cell -----------------------------------------------------------

HOSTILE_ROWS = [  # (cells, the column the reason must name)
    (["zoe.quartz@@example.org", "Zoë Quartz", "", ""], "email"),
    (["dee lane@example.org", "Dee Lane", "", ""], "email"),
    (["eve@exa_mple.org", "Eve Aster", "", ""], "email"),
    (["fay@example.org", "Fay\x07Bellwether", "", ""], "name"),
    (["gus@example.org", "Gustavo " * 20, "", ""], "name"),
    (["hal@example.org", "Hal", "Mars/Olympus-Mons", ""], "timezone"),
    (["ida@example.org", "Ida", "", "no-such-series-xyz"], "series"),
    (["erased.reader@example.org", "Erased Reader", "", ""], "email"),
]


def _csv(rows: list[list[str]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerows([["email", "name", "timezone", "series"], *rows])
    return buffer.getvalue()


def _leaks(cells: list[str], reason: str) -> list[str]:
    return [c for c in cells if c.strip() and c.strip() in reason]


def test_import_reasons_name_the_column_and_rule_never_a_cell(live: Settings) -> None:
    roster.erase_email(live, "erased.reader@example.org")
    rows = [cells for cells, _ in HOSTILE_ROWS]
    report = run(live, _csv(rows), dry_run=True)
    assert [p.line for p in report.invalid] == list(range(2, 2 + len(HOSTILE_ROWS)))
    every_cell = [c for cells in rows for c in cells]
    for problem, (_, column) in zip(report.invalid, HOSTILE_ROWS, strict=True):
        assert problem.reason.startswith(f"{column}: "), problem
        assert _leaks(every_cell, problem.reason) == [], problem
    assert "Europe/London" in report.invalid[5].reason  # the rule, with its example


CELL_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), min_size=6, max_size=40)


@hsettings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    rows=st.lists(
        st.tuples(
            st.one_of(  # a good address lets the later cells be checked too
                st.builds("{}@{}".format, CELL_TEXT, CELL_TEXT),
                st.builds("reader{}@example.org".format, st.integers(0, 10**6)),
            ),
            CELL_TEXT,
            st.one_of(CELL_TEXT, st.just("")),
            st.one_of(CELL_TEXT, st.just("")),
        ).map(list),
        min_size=1,
        max_size=5,
    )
)
def test_no_cell_appears_in_any_reason(live: Settings, rows: list[list[str]]) -> None:
    report = run(live, _csv(rows), dry_run=True)
    every_cell = [c for cells in rows for c in cells]
    for problem in report.invalid:
        assert _leaks(every_cell, problem.reason) == [], problem
