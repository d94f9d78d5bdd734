"""Series content: loading, every validation error (with file and line), and syncing into the DB."""

from __future__ import annotations

import datetime as dt
import textwrap
from pathlib import Path

import pytest
from paths import ROOT
from sqlalchemy import select
from typer.testing import CliRunner

from newsletter.content import names
from newsletter.content import series as content
from newsletter.content.series import ContentError, load_all, validate
from newsletter.core.config import Settings
from newsletter.mail.render import Renderer
from newsletter.store import db
from newsletter.store.models import DRAFT, Part, Series
from newsletter.store.series import sync

SCHEDULES = ROOT / "schedules"

SERIES_YAML = """\
slug: tiny
title: A Tiny Series
description: Two short parts for tests.
send_day: tuesday
send_time: "09:00"
cadence: weekly
order: 3
parts:
  - 01-first.md
  - 02-second.md
"""


def part_text(title: str, body: str = "Some words about therapy.\n") -> str:
    return f"---\ntitle: {title}\nsummary: A summary of {title}.\n---\n{body}"


def write_series(
    root: Path,
    name: str = "tiny",
    yaml_text: str = SERIES_YAML,
    parts: dict[str, str] | None = None,
) -> Path:
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "series.yaml").write_text(yaml_text)
    files = (
        parts
        if parts is not None
        else {
            "01-first.md": part_text("First"),
            "02-second.md": part_text("Second"),
        }
    )
    for filename, text in files.items():
        (folder / filename).write_text(text)
    return folder


def errors_for(path: Path) -> list[str]:
    problems = validate(path)
    assert problems, "expected validation errors"
    return problems


def test_good_series_loads(tmp_path: Path) -> None:
    write_series(tmp_path)
    [spec] = load_all(tmp_path)
    assert (spec.slug, spec.title, spec.send_day, spec.send_time, spec.cadence, spec.order) == (
        "tiny",
        "A Tiny Series",
        1,
        "09:00",
        "weekly",
        3,
    )
    assert [(p.number, p.filename, p.title) for p in spec.parts] == [
        (1, "01-first.md", "First"),
        (2, "02-second.md", "Second"),
    ]
    assert spec.parts[0].summary == "A summary of First."
    assert spec.parts[0].body_md == "Some words about therapy.\n"
    assert len(spec.parts[0].content_hash) == 64
    assert validate(tmp_path) == []
    assert validate(tmp_path / "tiny") == []  # one series folder works too


def test_defaults_and_unquoted_time(tmp_path: Path) -> None:
    text = SERIES_YAML.replace('"09:00"', "9:30").replace("cadence: weekly\n", "")
    text = text.replace("order: 3\n", "").replace("description: Two short parts for tests.\n", "")
    write_series(tmp_path, yaml_text=text)
    errors = validate(tmp_path)
    # 9:30 unquoted is YAML 1.1 sexagesimal (570); we read the raw text and still ask for HH:MM.
    assert errors == [
        f'{tmp_path}/tiny/series.yaml:4: send_time \'9:30\' must be "HH:MM" (24-hour, e.g. "09:00")'
    ]
    write_series(tmp_path, yaml_text=text.replace("9:30", "10:30"))
    [spec] = load_all(tmp_path)
    assert (spec.send_time, spec.cadence, spec.order, spec.description) == (
        "10:30",
        "weekly",
        None,
        "",
    )


def test_unknown_key_names_file_and_line(tmp_path: Path) -> None:
    write_series(tmp_path, yaml_text=SERIES_YAML.replace("order: 3\n", "order: 3\nsend_hour: 9\n"))
    assert errors_for(tmp_path) == [
        f"{tmp_path}/tiny/series.yaml:8: unknown key 'send_hour' (allowed: slug, title, "
        "description, send_day, send_time, cadence, order, parts)"
    ]


def test_unknown_front_matter_key(tmp_path: Path) -> None:
    text = "---\ntitle: First\nsummary: S\nauthor: me\n---\nBody.\n"
    write_series(tmp_path, parts={"01-first.md": text, "02-second.md": part_text("Second")})
    [error] = errors_for(tmp_path)
    assert error.startswith(f"{tmp_path}/tiny/01-first.md:4: unknown key 'author'")


def test_missing_part_file(tmp_path: Path) -> None:
    write_series(tmp_path, parts={"01-first.md": part_text("First")})
    assert errors_for(tmp_path) == [
        f"{tmp_path}/tiny/series.yaml:10: part file '02-second.md' not found in {tmp_path}/tiny"
    ]


def test_duplicate_slugs(tmp_path: Path) -> None:
    write_series(tmp_path, name="a")
    write_series(tmp_path, name="b")
    assert errors_for(tmp_path) == [
        f"{tmp_path}/b/series.yaml:1: duplicate slug 'tiny' (also in {tmp_path}/a/series.yaml:1)"
    ]
    with pytest.raises(ContentError) as caught:
        load_all(tmp_path)
    assert caught.value.errors == validate(tmp_path)


@pytest.mark.parametrize(
    ("line", "replacement", "message"),
    [
        (
            4,
            "send_day: someday",
            "send_day 'someday' is not a weekday name (monday … sunday)",
        ),
        (4, "send_day: 2", "send_day '2' is not a weekday name (monday … sunday)"),
        (5, 'send_time: "25:00"', 'send_time \'25:00\' must be "HH:MM" (24-hour, e.g. "09:00")'),
        (5, 'send_time: "9am"', 'send_time \'9am\' must be "HH:MM" (24-hour, e.g. "09:00")'),
        (6, "cadence: daily", "cadence 'daily' must be one of weekly, fortnightly"),
        (7, "order: first", "order 'first' must be a whole number"),
        (
            1,
            "slug: Not A Slug",
            "slug 'Not A Slug' must be lower-case letters, digits and single hyphens",
        ),
    ],
)
def test_bad_values(tmp_path: Path, line: int, replacement: str, message: str) -> None:
    lines = SERIES_YAML.splitlines()
    lines[line - 1] = replacement
    write_series(tmp_path, yaml_text="\n".join(lines) + "\n")
    [error] = errors_for(tmp_path)
    assert error.startswith(f"{tmp_path}/tiny/series.yaml:{line}: {message}")


def test_short_weekday_names_are_fine(tmp_path: Path) -> None:
    write_series(tmp_path, yaml_text=SERIES_YAML.replace("tuesday", "Thu"))
    assert load_all(tmp_path)[0].send_day == 3


def test_missing_required_keys(tmp_path: Path) -> None:
    write_series(tmp_path, yaml_text="slug: tiny\ntitle: T\nparts: [01-first.md]\n")
    assert errors_for(tmp_path) == [
        f"{tmp_path}/tiny/series.yaml:1: missing required key(s): send_day, send_time"
    ]


def test_series_yaml_not_yaml(tmp_path: Path) -> None:
    write_series(tmp_path, yaml_text=SERIES_YAML + "parts: [unclosed\n")
    [error] = errors_for(tmp_path)
    assert error.startswith(f"{tmp_path}/tiny/series.yaml:")
    assert "not valid YAML" in error


def test_empty_body(tmp_path: Path) -> None:
    write_series(
        tmp_path,
        parts={"01-first.md": part_text("First", "\n   \n"), "02-second.md": part_text("Second")},
    )
    assert errors_for(tmp_path) == [f"{tmp_path}/tiny/01-first.md:5: the article body is empty"]


def test_front_matter_not_yaml_reports_the_line_in_the_md_file(tmp_path: Path) -> None:
    bad = "---\ntitle: First\nsummary: [oops\n---\nBody.\n"
    write_series(tmp_path, parts={"01-first.md": bad, "02-second.md": part_text("Second")})
    [error] = errors_for(tmp_path)
    assert error.startswith(f"{tmp_path}/tiny/01-first.md:")
    line = int(error.split(":")[1])
    assert line in (3, 4, 5)  # the broken flow sequence starts on line 3 of the file
    assert "not valid YAML" in error


def test_front_matter_that_is_not_a_mapping(tmp_path: Path) -> None:
    bad = "---\n- just\n- a list\n---\nBody.\n"
    write_series(tmp_path, parts={"01-first.md": bad, "02-second.md": part_text("Second")})
    assert errors_for(tmp_path) == [
        f"{tmp_path}/tiny/01-first.md:2: expected a mapping of keys to values"
    ]


def test_missing_or_unclosed_front_matter(tmp_path: Path) -> None:
    write_series(
        tmp_path,
        parts={"01-first.md": "No front matter.\n", "02-second.md": "---\ntitle: x\nBody\n"},
    )
    errors = errors_for(tmp_path)
    assert errors[0].startswith(f"{tmp_path}/tiny/01-first.md:1: missing front matter")
    assert errors[1].startswith(f"{tmp_path}/tiny/02-second.md:1: front matter is not closed")


def test_front_matter_missing_summary(tmp_path: Path) -> None:
    write_series(
        tmp_path,
        parts={"01-first.md": "---\ntitle: First\n---\nBody.\n", "02-second.md": part_text("S")},
    )
    assert errors_for(tmp_path) == [
        f"{tmp_path}/tiny/01-first.md:1: front matter is missing summary:"
    ]


def test_part_listed_twice_and_bad_names(tmp_path: Path) -> None:
    text = SERIES_YAML.replace("  - 02-second.md\n", "  - 01-first.md\n  - ../escape.md\n")
    write_series(tmp_path, yaml_text=text)
    assert errors_for(tmp_path) == [
        f"{tmp_path}/tiny/series.yaml:10: part file '01-first.md' listed twice (also on line 9)",
        f"{tmp_path}/tiny/series.yaml:11: part 3: expected a file name in this folder, got "
        f"'../escape.md': use {names.PART_RULE}",
    ]


def test_duplicate_key_and_folder_without_series_yaml(tmp_path: Path) -> None:
    write_series(tmp_path, yaml_text=SERIES_YAML + "title: Again\n")
    (tmp_path / "stray").mkdir()
    assert errors_for(tmp_path) == [
        f"{tmp_path}/stray/series.yaml:1: missing series.yaml (every series folder needs one)",
        f"{tmp_path}/tiny/series.yaml:11: key 'title' given twice (first on line 2)",
    ]


def test_missing_path(tmp_path: Path) -> None:
    assert validate(tmp_path / "nope") == [f"{tmp_path}/nope:1: no such file or folder"]


def test_shipped_schedules_are_valid(settings: Settings) -> None:
    renderer = Renderer(settings)
    assert validate(SCHEDULES, check=renderer.check) == []
    specs = load_all(SCHEDULES)
    assert [(s.slug, s.order, len(s.parts)) for s in specs] == [
        ("myths-about-psychotherapy", 1, 4),
        ("co-created-process", 2, 2),
    ]
    for spec in specs:
        assert (spec.send_day, spec.send_time) == (1, "09:00")  # Tuesdays at 09:00
        for part in spec.parts:
            words = len(part.body_md.split())
            assert 300 <= words <= 650, (part.filename, words)


def test_cli_validate(settings: Settings, tmp_path: Path) -> None:
    from newsletter.cli import app

    runner = CliRunner()
    result = runner.invoke(app, ["series", "validate"])
    assert result.exit_code == 0, result.output
    assert "valid: 2 series, 6 parts" in result.output

    write_series(tmp_path / "bad", parts={"01-first.md": part_text("First")})
    result = runner.invoke(app, ["series", "validate", str(tmp_path / "bad")])
    assert result.exit_code == 1
    assert (
        f"{tmp_path}/bad/tiny/series.yaml:10: part file '02-second.md' not found" in result.output
    )


# --- sync ---------------------------------------------------------------------------------------


def _rows(url: str) -> tuple[list[Series], list[Part]]:
    with db.session_scope(url) as session:
        series = list(session.scalars(select(Series).order_by(Series.slug)))
        parts = list(session.scalars(select(Part).order_by(Part.series_id, Part.number)))
    return series, parts


def test_sync_new_append_edit(settings: Settings, tmp_path: Path) -> None:
    url = settings.database_url
    folder = write_series(tmp_path)
    with db.session_scope(url) as session:
        report = sync(session, load_all(tmp_path))
    assert report.new_series == ["tiny"] and report.appended == {} and report.changed == {}
    series, parts = _rows(url)
    assert [(s.slug, s.state, s.send_day, s.order) for s in series] == [("tiny", DRAFT, 1, 3)]
    assert series[0].content_hash
    assert [(p.number, p.filename, p.title) for p in parts] == [
        (1, "01-first.md", "First"),
        (2, "02-second.md", "Second"),
    ]

    # Unchanged files: nothing to report.
    with db.session_scope(url) as session:
        report = sync(session, load_all(tmp_path))
    assert (report.new_series, report.appended, report.changed) == ([], {}, {})

    # Append a part and edit an unsent one.
    (folder / "series.yaml").write_text(SERIES_YAML + "  - 03-third.md\n")
    (folder / "03-third.md").write_text(part_text("Third"))
    (folder / "02-second.md").write_text(part_text("Second", "Edited words.\n"))
    with db.session_scope(url) as session:
        report = sync(session, load_all(tmp_path))
    assert report.appended == {"tiny": [3]}
    assert report.changed == {"tiny": [2]}
    _, parts = _rows(url)
    assert [p.number for p in parts] == [1, 2, 3]
    assert parts[1].body_md == "Edited words.\n"


def test_sync_refuses_to_remove_or_reorder_sent_parts(settings: Settings, tmp_path: Path) -> None:
    url = settings.database_url
    folder = write_series(tmp_path)
    with db.session_scope(url) as session:
        sync(session, load_all(tmp_path))
        part1 = session.scalars(select(Part).where(Part.number == 1)).one()
        part1.first_sent_at = dt.datetime(2026, 3, 3, 14, tzinfo=dt.UTC)

    # Reorder: the sent part 1 would become part 2.
    (folder / "series.yaml").write_text(
        SERIES_YAML.replace(
            "  - 01-first.md\n  - 02-second.md\n", "  - 02-second.md\n  - 01-first.md\n"
        )
    )
    with db.session_scope(url) as session, pytest.raises(ContentError) as caught:
        sync(session, load_all(tmp_path))
    assert caught.value.errors == [
        f"{folder}/series.yaml:10: part 01-first.md was sent as part 1 on 2026-03-03 and can't "
        "move to position 2; add new parts after the sent ones"
    ]

    # Remove it.
    (folder / "series.yaml").write_text(SERIES_YAML.replace("  - 01-first.md\n", ""))
    with db.session_scope(url) as session, pytest.raises(ContentError) as caught:
        sync(session, load_all(tmp_path))
    assert (
        "part 1 (01-first.md) was sent on 2026-03-03 and can't be removed" in caught.value.errors[0]
    )

    _, parts = _rows(url)  # nothing changed
    assert [(p.number, p.filename) for p in parts] == [(1, "01-first.md"), (2, "02-second.md")]

    # Removing the unsent part 2 is fine.
    (folder / "series.yaml").write_text(SERIES_YAML.replace("  - 02-second.md\n", ""))
    with db.session_scope(url) as session:
        report = sync(session, load_all(tmp_path))
    assert report.removed == {"tiny": [2]}
    _, parts = _rows(url)
    assert [p.number for p in parts] == [1]


def test_init_syncs_shipped_series(settings: Settings) -> None:
    from newsletter.cli import app

    runner = CliRunner()
    result = runner.invoke(app, ["init"])
    assert result.exit_code == 0, result.output
    series, parts = _rows(settings.database_url)
    assert {s.slug for s in series} == {"myths-about-psychotherapy", "co-created-process"}
    assert len(parts) == 6
    result = runner.invoke(app, ["series", "list"])
    assert result.exit_code == 0, result.output
    assert "co-created-process" in result.output and "Tue 09:00" in result.output


def test_init_refuses_invalid_schedules(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from newsletter.cli import app
    from newsletter.core.config import get_settings

    write_series(tmp_path / "sched", yaml_text=SERIES_YAML.replace("tuesday", "funday"))
    monkeypatch.setenv("NEWSLETTER_SCHEDULES_DIR", str(tmp_path / "sched"))
    get_settings.cache_clear()
    result = CliRunner().invoke(app, ["init"])
    assert result.exit_code == 1
    assert "series.yaml:4: send_day 'funday'" in result.output
    assert _rows(settings.database_url)[0] == []


def test_content_error_message_lists_errors() -> None:
    error = content.ContentError(["a.yaml:1: x", "b.md:2: y"])
    assert str(error) == "a.yaml:1: x\nb.md:2: y"
    assert textwrap.dedent(str(error)).count("\n") == 1


def test_too_long_title_and_non_utf8(tmp_path: Path) -> None:
    long_title = "x" * 201
    write_series(
        tmp_path,
        parts={"01-first.md": part_text(long_title), "02-second.md": part_text("Second")},
    )
    assert errors_for(tmp_path) == [
        f"{tmp_path}/tiny/01-first.md:2: title is longer than 200 characters"
    ]
    (tmp_path / "tiny" / "series.yaml").write_bytes(b"slug: caf\xe9\n")
    [error] = errors_for(tmp_path)
    assert error.startswith(f"{tmp_path}/tiny/series.yaml:1: not UTF-8 text")
