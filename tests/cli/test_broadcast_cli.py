"""`newsletter broadcast create|list|cancel`: a letter file to chosen readers, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

from engine_support import add_person, outbox_mails, ship, utc
from typer.testing import CliRunner

from newsletter.cli import app
from newsletter.core.config import Settings

runner = CliRunner()
MONDAY = utc(2027, 2, 1, 12, 0)
LETTER = """---
title: The office is closed over the holidays
summary: From 24 December to 2 January.
---
We are closed over the holidays. If you need help urgently, call your local emergency number.
"""


def test_create_list_send_and_cancel(settings: Settings, tmp_path: Path) -> None:
    ship(settings, MONDAY)
    for zone in ("Europe/London", "Asia/Tokyo"):
        add_person(settings, MONDAY, zone)
    path = tmp_path / "closed.md"
    path.write_text(LETTER)
    made = runner.invoke(
        app,
        ["broadcast", "create", str(path), "--audience", "all", "--at", "2027-02-03T10:00Z",
         "--archive", "--now", MONDAY.isoformat(), "--json"],
    )  # fmt: skip
    assert made.exit_code == 0, made.output
    info = json.loads(made.stdout)
    assert (info["recipients"], info["state"], info["in_archive"]) == (2, "scheduled", True)
    second = runner.invoke(
        app, ["broadcast", "create", str(path), "--at", "2027-02-10", "--now", MONDAY.isoformat()]
    )
    assert second.exit_code == 0 and "scheduled for 2 readers" in second.output
    tick = runner.invoke(app, ["tick", "--now", "2027-02-03T10:00:00Z", "--json"])
    assert tick.exit_code == 0, tick.output
    subjects = [m["Subject"] for m in outbox_mails(settings)]
    assert subjects.count("The office is closed over the holidays") == 2
    cancel = runner.invoke(app, ["broadcast", "cancel", "2", "--now", MONDAY.isoformat()])
    assert cancel.exit_code == 0 and "cancelled" in cancel.output
    listed = json.loads(runner.invoke(app, ["broadcast", "list", "--json"]).stdout)
    assert [(b["id"], b["state"], b["sent"]) for b in listed] == [
        (2, "cancelled", 0),
        (1, "sent", 2),
    ]
    table = runner.invoke(app, ["broadcast", "list"])
    assert table.exit_code == 0 and "cancelled" in table.output


def test_bad_input_is_named(settings: Settings, tmp_path: Path) -> None:
    ship(settings, MONDAY)
    path = tmp_path / "letter.md"
    path.write_text(LETTER)
    now = ["--now", MONDAY.isoformat()]
    for args, words in (
        (["--audience", "everyone"], "unknown audience"),
        (["--audience", "series:nope"], "no series 'nope'"),
        (["--at", "next tuesday"], "--at must be"),
    ):
        result = runner.invoke(app, ["broadcast", "create", str(path), *args, *now])
        assert result.exit_code == 1 and words in result.output, result.output
    path.write_text("no front matter\n")
    result = runner.invoke(app, ["broadcast", "create", str(path), *now])
    assert result.exit_code == 1 and "front matter" in result.output
    result = runner.invoke(app, ["broadcast", "cancel", "42"])
    assert result.exit_code == 1 and "no broadcast 42" in result.output
