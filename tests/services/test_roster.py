"""CSV import (dry run, BOM, semicolons, duplicates, invalid rows, 10,000 rows in bounded memory),
export, access export, unsubscribe and erase."""

from __future__ import annotations

import datetime as dt
import io
import json
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import pytest
from paths import file_mode
from sqlalchemy import func, select
from typer.testing import CliRunner

from newsletter.cli import app
from newsletter.content import series as content
from newsletter.core import identity
from newsletter.core.config import Settings
from newsletter.engine import series_queue
from newsletter.queue.dueset import RedisQueue
from newsletter.services import export, importing, person_fields, roster
from newsletter.store import series as series_store
from newsletter.store.db import session_scope
from newsletter.store.models import (
    ACTIVE,
    ENROLLED_ACTIVE,
    PENDING,
    SENT,
    UNSUBSCRIBED,
    Delivery,
    Enrollment,
    ProviderEvent,
    Series,
    Subscriber,
    Suppression,
)

NOW = dt.datetime(2026, 3, 2, 12, 0, tzinfo=dt.UTC)
MYTHS = "myths-about-psychotherapy"


@pytest.fixture
def live(settings: Settings) -> Settings:
    """The shipped series synced and queued (live), like a fresh `newsletter init`."""
    with session_scope(settings.database_url) as session:
        series_store.sync(session, content.load_all(settings.schedules_dir))
        for slug in session.scalars(select(Series.slug).order_by(Series.order)):
            series_queue.queue_series(session, slug, None, NOW)
    return settings


def outbox(settings: Settings) -> list[Path]:
    return sorted(settings.outbox_dir.glob("*.eml")) if settings.outbox_dir.exists() else []


def csv_bytes(text: str, bom: bool = False) -> io.BytesIO:
    return io.BytesIO((b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8"))


MIXED = (
    "Email;Name;Time zone;Series\n"  # header in another case and with an alias
    "ana@example.org;Ana Álvarez;Europe/Madrid;\n"  # line 2
    "ANA@Example.org;Ana again;;\n"  # 3: duplicate differing in case
    "not-an-address;Nobody;;\n"  # 4: invalid
    "bo@example.org;Bo;Mars/Olympus;\n"  # 5: unknown zone
    "\n"  # 6: blank lines are skipped
    'cy@example.org;"Cy; the second";America/Chicago;co-created-process\n'  # 7
    "di@example.org;Di;;no-such-series\n"  # 8: unknown series
    "ed@example.org\n"  # 9: short row, email only
)


def test_dry_run_report_with_bom_semicolons_duplicates_and_invalid_rows(live: Settings) -> None:
    report = importing.import_csv(live, csv_bytes(MIXED, bom=True), dry_run=True)
    assert (report.rows, report.new, report.existing, report.duplicates) == (7, 3, 0, 1)
    assert [(p.line, p.reason.split(" ")[0]) for p in report.invalid] == [
        (4, "email:"),
        (5, "timezone:"),
        (8, "series:"),
    ]
    assert "time zone" in report.invalid[1].reason and "series" in report.invalid[2].reason
    with session_scope(live.database_url) as session:
        assert roster.count(session) == 0  # a dry run changes nothing
    assert outbox(live) == []


def test_import_pending_sends_confirmations(live: Settings) -> None:
    report = importing.import_csv(live, csv_bytes(MIXED), dry_run=False, now=NOW)
    assert (report.new, report.duplicates, len(report.invalid)) == (3, 1, 3)
    assert report.confirmations_sent == 3 and report.confirmations_failed == 0
    assert len(outbox(live)) == 3
    with session_scope(live.database_url) as session:
        subs = {s.email_key: s for s in session.scalars(select(Subscriber))}
        assert set(subs) == {"ana@example.org", "cy@example.org", "ed@example.org"}
        assert all(s.status == PENDING and s.consent_method == "import" for s in subs.values())
        assert subs["ana@example.org"].email == "ana@example.org"  # the first spelling wins
        assert subs["ana@example.org"].name == "Ana Álvarez"
        assert subs["cy@example.org"].name == "Cy; the second"
        assert subs["cy@example.org"].requested_series == ["co-created-process"]
        assert subs["ed@example.org"].timezone == live.default_timezone
        assert session.scalar(select(func.count(Enrollment.id))) == 0  # not before confirming
    # a second run finds them all already there
    again = importing.import_csv(live, csv_bytes(MIXED), dry_run=True)
    assert (again.new, again.existing) == (0, 3)


def test_import_already_consented_is_active_and_enrolled(live: Settings) -> None:
    text = "email,name,timezone,series\nfay@example.org,Fay,Europe/London,\ngus@example.org,,,co-created-process\n"
    report = importing.import_csv(live, csv_bytes(text), dry_run=False, confirmed=True, now=NOW)
    assert report.new == 2 and report.confirmations_sent == 0
    assert outbox(live) == []
    with session_scope(live.database_url) as session:
        subs = {s.email_key: s for s in session.scalars(select(Subscriber))}
        for s in subs.values():
            assert s.status == ACTIVE and s.consent_method == importing.IMPORT_CONSENTED
            assert s.confirmed_at == NOW and s.consent_at == NOW
        rows = list(
            session.execute(
                select(Subscriber.email_key, Series.slug, Enrollment)
                .join(Enrollment, Enrollment.subscriber_id == Subscriber.id)
                .join(Series, Series.id == Enrollment.series_id)
            )
        )
        fay = {slug: e for key, slug, e in rows if key == "fay@example.org"}
        gus = {slug: e for key, slug, e in rows if key == "gus@example.org"}
        assert set(fay) == {MYTHS, "co-created-process"}
        assert set(gus) == {"co-created-process"}
        active = [e for e in (*fay.values(), *gus.values()) if e.state == ENROLLED_ACTIVE]
        assert len(active) == 2 and all(e.next_due_at and e.next_due_at > NOW for e in active)
        ids = {str(e.id) for e in active}
    queue = RedisQueue(live)
    assert ids <= set(queue.redis.zrange(queue.due_key, 0, -1))


def test_erased_addresses_are_refused_on_import(live: Settings) -> None:
    importing.import_csv(
        live, csv_bytes("email\nhal@example.org\n"), dry_run=False, confirmed=True, now=NOW
    )
    assert roster.erase_email(live, "HAL@example.org")
    report = importing.import_csv(live, csv_bytes("email\nHal@Example.org\n"), dry_run=True)
    assert report.new == 0 and [p.line for p in report.invalid] == [2]
    assert "erased" in report.invalid[0].reason
    with pytest.raises(roster.RosterError, match="erased"):
        roster.add_subscriber(live, email="hal@example.org")


def test_bad_files_say_why(live: Settings) -> None:
    with pytest.raises(roster.RosterError, match="empty"):
        importing.import_csv(live, csv_bytes(""), dry_run=True)
    with pytest.raises(roster.RosterError, match="header"):
        importing.import_csv(live, csv_bytes("name,timezone\nAna,UTC\n"), dry_run=True)
    latin1 = io.BytesIO("email,name\nzoe@example.org,Zo\xeb\n".encode("latin-1"))
    report = importing.import_csv(live, latin1, dry_run=True)
    assert [p.line for p in report.invalid] == [2] and "UTF-8" in report.invalid[0].reason


def _big_csv(path: Path, rows: int) -> tuple[set[str], dict[int, str]]:
    """rows data lines: every 50th address invalid, every 100th a case-duplicate, every 333rd a bad zone."""
    valid: set[str] = set()
    invalid: dict[int, str] = {}
    last = ""  # the latest valid address
    with path.open("w", encoding="utf-8-sig", newline="") as f:
        f.write("email;name;timezone;series\r\n")
        for i in range(rows):
            line = i + 2
            if i % 50 == 49:
                f.write(f"person{i}-at-example.org;P {i};;\r\n")
                invalid[line] = "address"
            elif i % 333 == 332:
                f.write(f"person{i}@example.org;P {i};Nowhere/City;\r\n")
                invalid[line] = "zone"
            elif i % 100 == 0 and last:
                f.write(f"{last.upper()};dup;;\r\n")  # an earlier row, other case
            else:
                chosen = MYTHS if i % 7 == 0 else ""  # most take every series
                f.write(f"person{i}@example.org;Person {i};Europe/Berlin;{chosen}\r\n")
                valid.add(f"person{i}@example.org")
                last = f"person{i}@example.org"
    return valid, invalid


@pytest.mark.slow  # 10,000-row scale work (the longest non-process tests): not in `make check`
def test_ten_thousand_rows_dry_run_then_import_in_bounded_memory(
    live: Settings, tmp_path: Path
) -> None:
    path = tmp_path / "big.csv"
    valid, invalid = _big_csv(path, 10_000)
    duplicates = 10_000 - len(valid) - len(invalid)
    report = importing.import_csv(live, path, dry_run=True)
    assert report.rows == 10_000
    assert (report.new, report.existing, report.duplicates) == (len(valid), 0, duplicates)
    assert {p.line for p in report.invalid} == set(invalid)

    # The import itself (consent given elsewhere: each person enrolled and queued at once;
    # the pending path with its confirmation emails is the same loop, tested above).
    # Warm up (lazy imports, caches), then compare the traced peak of 1,000 rows with 10,000.
    warm = "email\n" + "".join(f"warm{i}@example.org\n" for i in range(3))
    importing.import_csv(live, csv_bytes(warm), dry_run=False, confirmed=True, now=NOW)
    # one full batch: the most an import holds at a time
    small = "email\n" + "".join(f"small{i}@example.org\n" for i in range(importing.BATCH_ROWS))

    def traced(
        source: io.BytesIO | Path, progress: list[int]
    ) -> tuple[importing.ImportReport, int]:
        tracemalloc.start()
        try:
            report = importing.import_csv(
                live, source, dry_run=False, confirmed=True, now=NOW, progress=progress.append
            )
            return report, tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    _report, peak_small = traced(csv_bytes(small), [])
    progress: list[int] = []
    report, peak = traced(path, progress)
    # Bounded by the batch size, not the file: ten times the rows, about the same peak.
    assert peak < peak_small * 1.5 + 2 * 1024 * 1024, (peak_small, peak)
    assert peak < 40 * 1024 * 1024, f"peak {peak / 1e6:.1f} MB"
    assert sum(progress) == 10_000 and max(progress) <= importing.BATCH_ROWS
    assert report.new == len(valid)
    assert {p.line for p in report.invalid} == set(invalid)
    with session_scope(live.database_url) as session:
        landed = set(
            session.scalars(
                select(Subscriber.email_key).where(
                    Subscriber.status == ACTIVE, Subscriber.email_key.like("person%")
                )
            )
        )
        enrolled = session.scalar(select(func.count(func.distinct(Enrollment.subscriber_id))))
    assert landed == valid  # nothing lost, nothing extra
    assert enrolled == len(valid) + importing.BATCH_ROWS + 3
    queue = RedisQueue(live)
    # part 1 of Myths due for all
    assert queue.redis.zcard(queue.due_key) == len(valid) + importing.BATCH_ROWS + 3
    assert progress


def test_export_csv_and_json_round_trip(live: Settings, tmp_path: Path) -> None:
    importing.import_csv(live, csv_bytes(MIXED), dry_run=False, confirmed=True, now=NOW)
    text = "".join(export.export_csv(live))
    assert text.startswith("\ufeffemail,name,timezone,series,status")
    assert "Ana Álvarez" in text and ",Cy; the second," in text
    data = json.loads("".join(export.export_json(live)))
    assert {d["email"] for d in data} == {"ana@example.org", "cy@example.org", "ed@example.org"}
    ana = next(d for d in data if d["email"] == "ana@example.org")
    assert ana["series"] == f"{MYTHS} co-created-process" and ana["status"] == ACTIVE
    # the export is importable as it is: everyone is already there
    again = importing.import_csv(live, io.BytesIO(text.encode("utf-8")), dry_run=True)
    assert (again.existing, again.new, again.invalid) == (3, 0, [])


def test_access_export_and_erase_leave_no_personal_data(live: Settings) -> None:
    sub_id = roster.add_subscriber(
        live, email="Ivy@example.org", name="Ivy", confirmed=True, now=NOW
    )
    with session_scope(live.database_url) as session:
        series_id = session.scalar(select(Series.id).where(Series.slug == MYTHS))
        assert series_id is not None
        d = Delivery(
            subscriber_id=sub_id,
            series_id=series_id,
            part_number=1,
            status=SENT,
            scheduled_for=NOW,
            sent_at=NOW,
            provider_message_id="msg-1",
            last_error="550 Ivy@example.org mailbox full",
        )
        session.add(d)
        session.flush()
        session.add(
            ProviderEvent(
                provider="sendgrid",
                event_id="ev1",
                event_type="delivered",
                delivery_id=d.id,
                subscriber_id=sub_id,
                occurred_at=NOW,
                detail="250 ok for Ivy@example.org",
            )
        )
    with session_scope(live.database_url) as session:
        sub = session.get(Subscriber, sub_id)
        assert sub is not None
        record = export.subscriber_record(session, sub)
    assert record["subscriber"]["email"] == "Ivy@example.org"
    assert record["consent"]["method"] == "admin-consented"
    assert [e["series"] for e in record["enrollments"]] == [MYTHS, "co-created-process"]
    assert record["deliveries"][0]["part"] == 1 and record["events"][0]["type"] == "delivered"

    assert roster.erase_email(live, "ivy@EXAMPLE.org")
    with session_scope(live.database_url) as session:
        assert session.get(Subscriber, sub_id) is None
        assert session.scalar(select(func.count(Enrollment.id))) == 0
        ledger = session.scalar(select(Delivery))
        assert ledger is not None and ledger.status == SENT and ledger.part_number == 1
        assert ledger.subscriber_id is None and ledger.last_error is None
        assert ledger.provider_message_id is None
        event = session.scalar(select(ProviderEvent))
        assert event is not None and event.subscriber_id is None and event.detail is None
        hashes = list(session.scalars(select(Suppression.email_hash)))
        assert hashes == [identity.suppression_key(live.secret, "ivy@example.org")]
    queue = RedisQueue(live)
    assert queue.redis.zcard(queue.due_key) == 0
    assert not roster.erase_email(live, "ivy@example.org")  # idempotent


def test_search(live: Settings) -> None:
    importing.import_csv(live, csv_bytes(MIXED), dry_run=False, now=NOW)
    with session_scope(live.database_url) as session:
        page, total = roster.search(session, "EXAMPLE.org")
        assert total == 3 and len(page) == 3
        assert [s.email for s in roster.search(session, "VAREZ")[0]] == ["ana@example.org"]
        assert [s.email for s in roster.search(session, "ana")[0]] == ["ana@example.org"]
        assert roster.search(session, "%")[1] == 0  # wildcards are literal
        assert roster.search(session, "", status=ACTIVE)[1] == 0


@pytest.mark.usefixtures("umask_022")
def test_cli_export_files_are_0600_in_0700_folders(live: Settings, tmp_path: Path) -> None:
    importing.import_csv(live, csv_bytes(MIXED), dry_run=False, now=NOW)
    runner = CliRunner()
    out = tmp_path / "exports" / "today" / "list.csv"
    result = runner.invoke(app, ["subscribers", "export", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "ana@example.org" in out.read_text()
    assert file_mode(out) == 0o600
    assert file_mode(out.parent) == file_mode(out.parent.parent) == 0o700
    older = tmp_path / "old.json"  # an export from before, readable by anyone: replaced
    older.write_text("[]")
    older.chmod(0o644)
    result = runner.invoke(app, ["subscribers", "export", "--format", "json", "-o", str(older)])
    assert result.exit_code == 0, result.output
    assert len(json.loads(older.read_text())) == 3 and file_mode(older) == 0o600
    assert not [p for p in tmp_path.rglob("*") if "partial" in p.name]


def test_cli_import_export_unsubscribe_erase(live: Settings, tmp_path: Path) -> None:
    path = tmp_path / "list.csv"
    path.write_bytes(b"\xef\xbb\xbf" + MIXED.encode("utf-8"))
    runner = CliRunner()
    result = runner.invoke(app, ["subscribers", "import", str(path), "--dry-run", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert (
        data["dry_run"] and data["new"] == 3 and [p["line"] for p in data["invalid"]] == [4, 5, 8]
    )
    result = runner.invoke(app, ["subscribers", "import", str(path), "--confirmed"])
    assert result.exit_code == 0, result.output
    assert "import done" in result.stdout and "invalid rows" in result.stdout
    out = tmp_path / "out.json"
    result = runner.invoke(app, ["subscribers", "export", "--format", "json", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert len(json.loads(out.read_text())) == 3
    result = runner.invoke(app, ["subscribers", "export"])
    assert result.exit_code == 0 and "cy@example.org" in result.stdout
    result = runner.invoke(app, ["subscribers", "unsubscribe", "CY@example.org"])
    assert result.exit_code == 0, result.output
    with session_scope(live.database_url) as session:
        cy = roster.find(session, "cy@example.org")
        assert cy is not None and cy.status == UNSUBSCRIBED
    result = runner.invoke(app, ["subscribers", "erase", "cy@example.org", "--yes"])
    assert result.exit_code == 0 and "erased" in result.stdout
    result = runner.invoke(app, ["subscribers", "unsubscribe", "cy@example.org"])
    assert result.exit_code == 1
    result = runner.invoke(app, ["subscribers", "import", str(tmp_path / "missing.csv")])
    assert result.exit_code == 2


def test_person_maker_gives_make_persons_answers_and_first_problems() -> None:
    """The import's memoising maker: the same CheckedPerson or the same first problem, also when a
    time zone or series cell repeats (its answer then comes from the memo)."""
    known = {MYTHS, "other"}
    cases = [
        ("A@Example.ORG", "  Bo   Bo ", "Europe/Berlin", None),
        ("a@example.org", None, "", ""),
        ("b@example.org", "", "Mars/Olympus", MYTHS),
        ("not-an-address", "Bo", "Mars/Olympus", "nope"),  # the address is the first problem
        ("c@example.org", "Bo\x01", "Mars/Olympus", "nope"),  # then the name
        ("c@example.org", "Bo", "Mars/Olympus", "nope"),  # then the zone
        ("c@example.org", "Bo", "Europe/Berlin", "nope"),  # then the series
        ("c@example.org", "Bo", " Europe/Berlin ", f"{MYTHS}; other,{MYTHS}"),
        ("d@bücher.example", "Bü", "UTC", "other"),
        ("", "x" * 101, "UTC", None),
        ("e@example.org", "x" * 101, "UTC", None),
    ]
    make = person_fields.person_maker(default_timezone="Europe/London", known_series=known)
    FIRST_PROBLEM = {4: "timezone", 5: "email", 6: "name", 7: "timezone", 8: "series"}
    FIRST_PROBLEM |= {11: "email", 12: "name"}

    def answer(
        maker: Callable[..., person_fields.CheckedPerson], *args: object, **options: object
    ) -> object:
        try:
            return maker(*args, **options)
        except ValueError as exc:
            return ("problem", str(exc))

    for _ in range(2):  # the second round is answered from the memo
        for line, (email, name, zone, series) in enumerate(cases, start=2):
            expected = answer(
                person_fields.make_person,
                line,
                email,
                name,
                zone,
                series,
                default_timezone="Europe/London",
                known_series=known,
            )
            got = answer(make, line, email, name, zone, series)
            if isinstance(expected, person_fields.CheckedPerson):
                assert got == expected and line not in FIRST_PROBLEM
            else:  # the same first problem, told by column and rule
                assert isinstance(expected, tuple)
                column = FIRST_PROBLEM[line]
                assert got == (
                    "problem",
                    str(person_fields.cell_problem(column, ValueError(expected[1]))),
                )
    assert isinstance(answer(make, 2, *cases[0]), person_fields.CheckedPerson)
