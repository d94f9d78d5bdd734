"""Bad CSV imports never crash: each bad row is reported with its line and reason, good rows land.

A file that can't be read as a subscriber list at all (no header naming an email column,
UTF-16, binary) is refused whole with one line saying why, and nothing is written. The corpus
(tests/corpus/csv/) goes through every door: importing.import_csv, `newsletter subscribers
import`, the admin upload and `POST /api/v1/subscribers/import`; hypothesis then writes random
files around rows that are known to be good.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from paths import TESTS
from pydantic import SecretStr
from sqlalchemy import func, select
from typer.testing import CliRunner
from web_helpers import csrf

from newsletter.cli import app as cli
from newsletter.content import series as content
from newsletter.core.config import Settings
from newsletter.services import auth, importing, roster
from newsletter.store import series as series_store
from newsletter.store.db import session_scope
from newsletter.store.models import Subscriber
from newsletter.web.app import create_app

CORPUS = TESTS / "corpus" / "csv"
FILES = sorted(p.name for p in CORPUS.glob("*.csv"))
GOOD = ["ann@example.org", "bo@example.org"]  # in every corpus file that has rows
REFUSED = {  # whole-file problems: refused with one line, nothing written
    "empty.csv": "empty",
    "only_bom.csv": "empty",
    "header_only.csv": None,  # not refused: a header and no rows is an empty import
    "no_email_header.csv": "header",
    "pipe_delimited.csv": "header",
    "utf16.csv": "UTF-8",
    "binary.csv": "UTF-8",
}
NOW = dt.datetime(2026, 3, 2, 12, 0, tzinfo=dt.UTC)
PASSWORD = "a calm and long password"


def physical_lines(data: bytes) -> int:
    return data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").rstrip(b"\n").count(b"\n") + 1


def emails(settings: Settings) -> set[str]:
    with session_scope(settings.database_url) as session:
        return set(session.scalars(select(Subscriber.email_key)))


def check_report(report: importing.ImportReport, data: bytes) -> None:
    """Every row is accounted for once; each problem names a real line and one readable reason."""
    assert report.rows == report.new + report.existing + report.duplicates + len(report.invalid)
    last = physical_lines(data)
    for problem in report.invalid:
        assert 2 <= problem.line <= last, problem
        assert problem.reason and "\n" not in problem.reason and len(problem.reason) < 300
        assert "Traceback" not in problem.reason


def import_file(settings: Settings, name: str, *, dry_run: bool) -> importing.ImportReport:
    return importing.import_csv(
        settings, io.BytesIO((CORPUS / name).read_bytes()), dry_run=dry_run, confirmed=True, now=NOW
    )


@pytest.mark.parametrize("name", FILES)
def test_corpus_file_imports_good_rows_and_reports_bad_ones(settings: Settings, name: str) -> None:
    data = (CORPUS / name).read_bytes()
    if REFUSED.get(name):
        with pytest.raises(roster.RosterError) as caught:
            import_file(settings, name, dry_run=False)
        message = str(caught.value)
        assert REFUSED[name] in message and "\n" not in message  # type: ignore[operator]
        assert emails(settings) == set()
        return
    checked = import_file(settings, name, dry_run=True)
    check_report(checked, data)
    assert emails(settings) == set()  # a dry run writes nothing
    report = import_file(settings, name, dry_run=False)
    check_report(report, data)
    assert (report.new, len(report.invalid)) == (checked.new, len(checked.invalid))
    landed = emails(settings)
    assert len(landed) == report.new
    if name != "header_only.csv":
        assert set(GOOD) <= landed, report.invalid
    again = import_file(settings, name, dry_run=False)  # importing twice adds nobody
    assert again.new == 0 and emails(settings) == landed


def reasons(settings: Settings, name: str) -> dict[int, str]:
    return {p.line: p.reason for p in import_file(settings, name, dry_run=True).invalid}


def test_corpus_reasons_are_specific(settings: Settings) -> None:
    assert reasons(settings, "bom_crlf.csv") == {4: reasons(settings, "bom_crlf.csv")[4]}
    assert "not a valid email address" in reasons(settings, "bom_crlf.csv")[4]
    bad_bytes = reasons(settings, "invalid_utf8.csv")
    assert sorted(bad_bytes) == [4, 5, 6] and all("UTF-8" in r for r in bad_bytes.values())
    nul = reasons(settings, "nul_bytes.csv")
    assert "control" in nul[4] and "control" in nul[5] and "time zone" in nul[6]
    huge = reasons(settings, "huge_cells.csv")
    assert "longer than 100" in huge[4] and "too long" in huge[5] and "time zone" in huge[6]
    limit = reasons(settings, "field_limit.csv")
    assert list(limit) == [4] and "rest of the file" in limit[4]
    zones = reasons(settings, "odd_zones.csv")
    assert sorted(zones) == list(range(4, 11)) and all("time zone" in r for r in zones.values())
    assert reasons(settings, "unknown_series.csv")[4].startswith("series: names a series")
    assert list(reasons(settings, "semicolon.csv")) == [4]  # its zone, not its comma


def test_tab_delimited_and_duplicate_headers_are_understood(settings: Settings) -> None:
    import_file(settings, "tab_delimited.csv", dry_run=False)
    report = import_file(settings, "duplicate_headers.csv", dry_run=False)
    assert report.invalid == []
    with session_scope(settings.database_url) as session:
        zones = {s.email: s.timezone for s in session.scalars(select(Subscriber))}
    assert zones == {"ann@example.org": "Europe/London", "bo@example.org": "Europe/London"}
    with session_scope(settings.database_url) as session:
        session.execute(Subscriber.__table__.delete())
    import_file(settings, "duplicate_headers.csv", dry_run=False)
    with session_scope(settings.database_url) as session:
        names = {s.name for s in session.scalars(select(Subscriber))}
        zones2 = {s.timezone for s in session.scalars(select(Subscriber))}
    assert names == {"Good"} and zones2 == {"Europe/Paris"}  # the first of each column wins


# --- the other doors -----------------------------------------------------------------------


def test_cli_import_of_every_corpus_file(settings: Settings) -> None:
    runner = CliRunner()
    for name in FILES:
        result = runner.invoke(cli, ["subscribers", "import", str(CORPUS / name), "--json"])
        assert "Traceback" not in result.output, name
        if REFUSED.get(name):
            assert result.exit_code == 1 and REFUSED[name] in result.output, (name, result.output)
        else:
            assert result.exit_code == 0, (name, result.output)
            assert result.exception is None, name


@pytest.fixture
def web(settings: Settings) -> Iterator[tuple[TestClient, str]]:
    admin = settings.model_copy(update={"admin_password": SecretStr(PASSWORD)})
    with session_scope(admin.database_url) as session:
        series_store.sync(session, content.load_all(admin.schedules_dir))
        token = auth.create_token(session, "tests")
    app: FastAPI = create_app(admin)
    with TestClient(
        app,
        base_url="https://news.example.org",
        follow_redirects=False,
        raise_server_exceptions=False,
    ) as c:
        yield c, token


def test_api_import_of_every_corpus_file(web: tuple[TestClient, str]) -> None:
    c, token = web
    for name in FILES:
        r = c.post(
            "/api/v1/subscribers/import?dry_run=false&confirmed=true",
            content=(CORPUS / name).read_bytes(),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "text/csv"},
        )
        if REFUSED.get(name):
            assert r.status_code == 400, (name, r.text)
            assert REFUSED[name] in r.json()["detail"], name
        else:
            assert r.status_code == 200, (name, r.text)
            body = r.json()
            assert all(isinstance(p["line"], int) and p["reason"] for p in body["invalid"])


def test_admin_upload_of_every_corpus_file(web: tuple[TestClient, str]) -> None:
    c, _ = web
    c.post("/admin/login", data={"csrf_token": csrf(c, "/admin/login"), "password": PASSWORD})
    for name in FILES:
        r = c.post(
            "/admin/import",
            data={"csrf_token": csrf(c, "/admin/import"), "consented": "yes"},
            files={"file": (name, (CORPUS / name).read_bytes(), "text/csv")},
        )
        if REFUSED.get(name):
            assert r.status_code == 303 and r.headers["location"].startswith("/admin/import")
            page = c.get(r.headers["location"])
            assert "can" in page.text and "be imported" in page.text, name
            continue
        assert r.status_code == 200, (name, r.status_code, r.text[:300])
        upload = re.search(r'action="(/admin/import/[A-Za-z0-9_-]+)"', r.text)
        assert upload, name
        r = c.post(upload[1], data={"csrf_token": csrf(c, "/admin/import"), "consented": "yes"})
        assert r.status_code == 200, (name, r.status_code, r.text[:300])


# --- properties ----------------------------------------------------------------------------

NASTY = st.sampled_from(
    ["\x00", "\x07", "\t", "\r", "\n", "\r\n", '"', "'", ",", ";", "\ufeff", "\u202e", "\u2028",
     "\u200b", "é", "İ", "ß", "🙂", "@", "=", "<", ">", "\\", "\udc80", " ", "example.org"]
)  # fmt: skip
CELL = st.one_of(
    st.text(max_size=20),
    st.lists(st.one_of(NASTY, st.text("abcxyz.@-", max_size=4)), max_size=8).map("".join),
    st.sampled_from(["UTC", "Europe/London", "Nowhere/Zone", "../../etc", "a" * 300]),
)


@st.composite
def csv_file(draw: st.DrawFn) -> tuple[bytes, list[str], bool]:
    """(file bytes, addresses of the good rows, whether rows were written with proper quoting)."""
    rows: list[list[str]] = []
    good: list[str] = []
    for index in range(draw(st.integers(0, 12))):
        if draw(st.booleans()):
            address = f"good{index}-{draw(st.integers(0, 10**6))}@example.org"
            good.append(address)
            rows.append([address, "Good Person", "Europe/London", ""])
        else:
            rows.append(draw(st.lists(CELL, max_size=6)))
    delimiter = draw(st.sampled_from([",", ";"]))
    quoted = draw(st.booleans())
    if quoted:
        buffer = io.StringIO()
        writer = csv.writer(buffer, delimiter=delimiter, lineterminator="\r\n")
        writer.writerow(["email", "name", "timezone", "series"])
        writer.writerows(rows)
        text = buffer.getvalue()
    else:  # joined by hand: stray quotes and newlines may swallow or split rows
        text = "\n".join(
            delimiter.join(r) for r in [["email", "name", "timezone", "series"], *rows]
        )
    data = text.encode("utf-8", "surrogatepass")
    if draw(st.booleans()):
        data = b"\xef\xbb\xbf" + data
    return data, good, quoted


PROPERTY = hsettings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@PROPERTY
@given(case=csv_file())
def test_any_csv_imports_good_rows_and_reports_the_rest(
    settings: Settings, case: tuple[bytes, list[str], bool]
) -> None:
    data, good, quoted = case
    with session_scope(settings.database_url) as session:
        before = session.scalar(select(func.count(Subscriber.id))) or 0
    report = importing.import_csv(
        settings, io.BytesIO(data), dry_run=False, confirmed=True, now=NOW
    )
    check_report(report, data)
    with session_scope(settings.database_url) as session:
        after = session.scalar(select(func.count(Subscriber.id))) or 0
        landed = set(
            session.scalars(select(Subscriber.email_key).where(Subscriber.email_key.in_(good)))
        )
    assert after - before == report.new
    if quoted:  # a well-formed file: every good row lands, whatever the rows around it hold
        assert landed == set(good), report.invalid
