"""Issue 13 #2: no CSV the product writes holds a live spreadsheet formula (OWASP CSV injection).

The export is read back the way a spreadsheet reads it (the csv module, cell by cell): a cell that
starts with =, +, -, @, tab or carriage return must start with an apostrophe instead."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from typer.testing import CliRunner
from web_helpers import admin_app_client, as_admin, sign_in

from newsletter.cli import app
from newsletter.core.config import Settings
from newsletter.services import export
from newsletter.store.db import session_scope
from newsletter.store.models import ACTIVE, Subscriber

HYPERLINK = '=HYPERLINK("http://x","y")'
NAMES = {
    "f1@example.org": HYPERLINK,
    "f2@example.org": "+1+2",
    "f3@example.org": "-2+3",
    "f4@example.org": "@SUM(A1)",
    "f5@example.org": "\tTab",
    "f6@example.org": "\rReturn",
    "f7@example.org": "Plain = name",
}
PASSWORD = "a calm and long password"
FORMULA_LEADERS = ("=", "+", "-", "@", "\t", "\r")


@pytest.fixture
def readers(settings: Settings) -> Settings:
    with session_scope(settings.database_url) as session:
        for n, (email, name) in enumerate(NAMES.items()):
            session.add(
                Subscriber(
                    public_id=f"p{n}",
                    email=email,
                    email_key=email,
                    name=name,
                    timezone="Europe/London",
                    status=ACTIVE,
                )
            )
    return settings


def spreadsheet_rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text.lstrip("\ufeff"), newline="")))


def assert_no_formula(text: str) -> None:
    rows = spreadsheet_rows(text)
    names = {row["email"]: row["name"] for row in rows}
    assert names["f1@example.org"] == "'" + HYPERLINK
    assert names["f1@example.org"].startswith("'")
    for email, name in NAMES.items():
        expected = "'" + name if name.startswith(FORMULA_LEADERS) else name
        assert names[email] == expected, email
    for row in rows:
        for cell in row.values():
            assert not cell.startswith(FORMULA_LEADERS), row


def test_service_export_neutralises_formula_cells(readers: Settings) -> None:
    assert_no_formula("".join(export.export_csv(readers)))


def test_cli_export_neutralises_formula_cells(readers: Settings, tmp_path: Path) -> None:
    out = tmp_path / "list.csv"
    result = CliRunner().invoke(app, ["subscribers", "export", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert_no_formula(out.read_bytes().decode("utf-8"))  # no newline translation
    result = CliRunner().invoke(app, ["subscribers", "export"])
    assert result.exit_code == 0, result.output
    assert "'" + HYPERLINK.replace('"', '""') in result.stdout


def test_admin_export_neutralises_formula_cells(readers: Settings) -> None:
    with admin_app_client(as_admin(readers)) as client:
        sign_in(client)
        r = client.get("/admin/export.csv")
        assert r.status_code == 200
        assert_no_formula(r.text)


def test_every_text_cell_is_guarded_not_only_the_name(settings: Settings) -> None:
    # a reader whose every free-text cell (address, zone, series asked for, consent record)
    # starts with a formula leader: each column goes through the guard
    cells = {
        "email": "=1+1@example.org",
        "timezone": "+Europe/London",
        "consent_method": "-import",
        "consent_ip": "@203.0.113.9",
        "consent_form": "\tform",
        "consent_wording": "\rv1",
    }
    with session_scope(settings.database_url) as session:
        session.add(
            Subscriber(
                public_id="p-all",
                email=cells["email"],
                email_key=cells["email"],
                name="=Ann",
                timezone=cells["timezone"],
                status=ACTIVE,
                requested_series=["=cmd|' /C calc'!A0", "plain"],
                consent_method=cells["consent_method"],
                consent_ip=cells["consent_ip"],
                consent_form=cells["consent_form"],
                consent_wording=cells["consent_wording"],
            )
        )
    (row,) = spreadsheet_rows("".join(export.export_csv(settings)))
    for column, value in cells.items():
        assert row[column] == "'" + value, column
    assert row["name"] == "'=Ann"
    assert row["series"] == "'=cmd|' /C calc'!A0 plain"
    for cell in row.values():
        assert not cell.startswith(FORMULA_LEADERS), row


def test_the_guard_reads_one_character_a_leader() -> None:
    # spreadsheet_safe looks at a cell's first character only: a longer leader would pass
    assert all(len(leader) == 1 for leader in export.FORMULA_LEADERS)
    assert export.spreadsheet_safe([*FORMULA_LEADERS, "a=", None, ""]) == [
        "'" + leader for leader in FORMULA_LEADERS
    ] + ["a=", "", ""]
