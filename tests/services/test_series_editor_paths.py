"""The series editor writes only inside schedules/: hostile slugs, part file names and one-line
values are refused before anything touches the disk, and a refused save leaves nothing behind.

The project here is the test's own folder: schedules/ (a copy of the shipped series), a
stand-in virtualenv with a site-packages folder (where a `.pth` file once ran code), and files
beside them; var/ (the editor's lock files) is the app's own state and not compared.
"""

from __future__ import annotations

import datetime as dt
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, example, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from newsletter.content import names
from newsletter.content import series as content
from newsletter.content.writing import PartText, SeriesText
from newsletter.core.config import Settings
from newsletter.services import series_editor
from newsletter.store import series as series_store
from newsletter.store.db import session_scope

NOW = dt.datetime(2026, 12, 1, 18, 0, tzinfo=dt.UTC)
ABS = "{ABS}"  # replaced by the test folder's absolute path (absolute names stay in the sandbox)

GOOD = SeriesText(
    slug="worry",
    title="Worry",
    description="A short series on worry.",
    send_day=1,
    send_time="08:30",
    parts=[
        PartText("When work keeps you up", "Worry at night is common.", "Part one text."),
        PartText("Myth: just relax", "Why it rarely works.", "Part two text."),
    ],
)

# Pieces of hostile names: traversal, absolute paths, comment and key characters, line breaks
# (YAML's and Unicode's), look-alikes of "/" and ".", Windows separators, very long runs.
HOSTILE = [
    "../",
    "..",
    "/",
    ABS + "/",
    "#",
    ":",
    " ",
    "\n",
    "\r",
    "\t",
    "\u2028",
    "\u2029",
    "\x85",
    "\x00",
    "\uff0f",  # fullwidth solidus
    "\uff0e",  # fullwidth full stop
    "\u2024",  # one-dot leader
    "\u2215",  # division slash
    "\\",
    "..\\",
    "C:",
    "x" * 300,
    "evil",
    "outside-series",
    "venv/lib/site-packages/",
    ".",
    ".md",
    ".pth",
    "A",
    "a",
    "1",
    "-",
]
hostile = st.lists(st.sampled_from(HOSTILE), min_size=0, max_size=6).map("".join)
plain_slug = st.from_regex(r"[a-z0-9]{1,8}(-[a-z0-9]{1,8}){0,2}", fullmatch=True)
slugs = st.one_of(hostile, plain_slug, hostile.map(lambda v: "s-" + v))
part_names = st.one_of(
    hostile,
    hostile.map(lambda v: v + ".md"),
    hostile.map(lambda v: "01-" + v + ".md"),
    st.just(""),  # a new part: the editor names it
)
one_liners = st.one_of(st.just(""), hostile, st.sampled_from(["\u2028slug: x", '"\nslug: x']))


@pytest.fixture
def project(settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings whose schedules/ sits in a project folder with things worth attacking beside it."""
    root = tmp_path / "project"
    shutil.copytree(settings.schedules_dir, root / "schedules")
    site = root / "venv" / "lib" / "site-packages"
    site.mkdir(parents=True)
    (site / "existing.pth").write_text("import os\n")
    (root / "README.md").write_text("the project\n")
    (tmp_path / "x.md").write_text("beside the project\n")
    monkeypatch.setenv("NEWSLETTER_SCHEDULES_DIR", str(root / "schedules"))
    with session_scope(settings.database_url) as db:
        series_store.sync(db, content.load_all(root / "schedules"))
    return settings.model_copy(update={"schedules_dir": root / "schedules"})


def outside_schedules(settings: Settings) -> dict[str, bytes | None]:
    """Every file and folder of the test's folder (None: a folder), except schedules/ and the
    app's own state: var/ (lock files), the outbox and the SQLite database."""
    top = Path(settings.schedules_dir).parent.parent
    skip = (Path(settings.schedules_dir), Path(settings.var_dir), Path(settings.outbox_dir))
    found: dict[str, bytes | None] = {}
    for path in sorted(top.rglob("*")):
        if path.name.startswith("newsletter.db") or any(
            path == s or path.is_relative_to(s) for s in skip
        ):
            continue
        found[str(path.relative_to(top))] = None if path.is_dir() else path.read_bytes()
    return found


def assert_schedules_hold_only_valid_series(settings: Settings) -> None:
    root = Path(settings.schedules_dir)
    assert content.validate(root) == []
    for folder in root.iterdir():
        assert folder.is_dir() and names.is_slug(folder.name), folder.name
        assert (folder / content.SERIES_FILE).is_file(), folder.name
        for path in folder.iterdir():
            assert path.is_file() and not path.is_symlink(), path
            if path.name != content.SERIES_FILE:
                assert names.part_name_problem(path.name) is None, path
        assert content.load_series(folder).slug == folder.name


def _absolute(value: str, settings: Settings) -> str:
    return value.replace(ABS, str(Path(settings.schedules_dir).parent.parent))


def _save(settings: Settings, slug: str | None, text: SeriesText, token: str) -> bool:
    """Save; True when saved, False when refused with problems (nothing else may happen)."""
    try:
        series_editor.save(settings, slug, text, token, NOW)
    except series_editor.EditorError as refused:
        assert refused.problems and all(p.message for p in refused.problems)
        event("refused")
        return False
    event("saved")
    return True


@hsettings(
    max_examples=40,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    slug=slugs,
    first=part_names,
    second=part_names,
    line=one_liners,
    field=st.sampled_from(["title", "send_time", "description", "part-title", "part-summary"]),
    edit=st.booleans(),
)
@example(
    slug="evil #/../../../outside-series", first="", second="", line="", field="title", edit=False
)
@example(slug="worry", first=ABS + "/x.pth", second="", line="", field="title", edit=False)
@example(slug="worry", first="../../x.md", second="", line="", field="title", edit=True)
def test_no_save_writes_outside_schedules(
    project: Settings, slug: str, first: str, second: str, line: str, field: str, edit: bool
) -> None:
    before = outside_schedules(project)
    parts = [
        replace(GOOD.parts[0], filename=_absolute(first, project)),
        replace(GOOD.parts[1], filename=_absolute(second, project)),
    ]
    text = GOOD
    if field.startswith("part-"):  # a hostile subject line or inbox preview line
        key = field.removeprefix("part-")
        parts[1] = replace(parts[1], **{key: getattr(parts[1], key) + line})
    else:
        text = replace(GOOD, **{field: getattr(GOOD, field) + line})
    text = replace(text, parts=parts)
    slug = _absolute(slug, project)
    if edit:  # the series named in the address, with new parts after its own
        opened = series_editor.open_series(project, "co-created-process")
        assert opened is not None
        text = replace(opened.text, parts=[*opened.text.parts, *parts])
        _save(project, slug if slug else "co-created-process", text, opened.token)
    else:
        _save(project, None, replace(text, slug=slug), series_editor.NEW_TOKEN)
    assert outside_schedules(project) == before
    assert_schedules_hold_only_valid_series(project)


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"slug": "evil #/../../../outside-series"}, "slug"),
        ({"slug": "../outside-series"}, "slug"),
        ({"slug": "worry\n"}, "slug"),
        ({"send_time": "08:30\u2028cadence: fortnightly"}, "send_time"),
        ({"description": "Calm.\u2028send_day: sunday"}, "description"),
        ({"title": "Worry\u2029order: 1"}, "title"),
        ({"parts": [replace(GOOD.parts[0], filename="/abs/x.pth")]}, "part-1"),
        ({"parts": [replace(GOOD.parts[0], filename="../../x.md")]}, "part-1"),
        ({"parts": [replace(GOOD.parts[0], summary="Calm\x85title: x")]}, "part-1-summary"),
    ],
)
def test_a_hostile_value_is_refused_at_its_field_and_nothing_is_written(
    project: Settings, change: dict[str, object], field: str
) -> None:
    before = outside_schedules(project)
    schedules = _files(Path(project.schedules_dir))
    with pytest.raises(series_editor.EditorError) as refused:
        series_editor.save(project, None, replace(GOOD, **change), series_editor.NEW_TOKEN, NOW)
    assert [p.field for p in refused.value.problems] == [field]
    assert outside_schedules(project) == before
    assert _files(Path(project.schedules_dir)) == schedules  # no folder, no staging leftovers
    assert sorted(p.name for p in Path(project.schedules_dir).iterdir()) == [
        "co-created-process",
        "myths-about-psychotherapy",
    ]


def test_the_message_names_the_field_holding_a_line_separator(project: Settings) -> None:
    text = replace(GOOD, send_time="08:30\u2028x", parts=[replace(GOOD.parts[0], title="A\u2028")])
    with pytest.raises(series_editor.EditorError) as refused:
        series_editor.save(project, None, text, series_editor.NEW_TOKEN, NOW)
    assert {p.field: p.message.split(" has ")[0] for p in refused.value.problems} == {
        "send_time": "The send time",
        "part-1-title": "The subject line of part 1",
    }
    assert all("(U+2028)" in p.message for p in refused.value.problems)


def test_a_series_folder_linked_outside_is_never_written_through(
    project: Settings, tmp_path: Path
) -> None:
    """A link in schedules/ pointing elsewhere: the resolved path is outside, so no write."""
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(Path(project.schedules_dir) / "co-created-process", elsewhere)
    shutil.rmtree(Path(project.schedules_dir) / "co-created-process")
    (Path(project.schedules_dir) / "co-created-process").symlink_to(elsewhere)
    before = _files(elsewhere)
    opened = series_editor.open_series(project, "co-created-process")
    assert opened is not None
    text = replace(opened.text, parts=[*opened.text.parts, GOOD.parts[0]])
    with pytest.raises(series_editor.EditorError) as refused:
        series_editor.save(project, "co-created-process", text, opened.token, NOW)
    assert "outside schedules/" in refused.value.problems[0].message
    assert _files(elsewhere) == before
    assert not [p for p in Path(project.schedules_dir).iterdir() if p.name.startswith(".")]


def test_a_good_series_still_saves(project: Settings) -> None:
    saved = series_editor.save(project, None, GOOD, series_editor.NEW_TOKEN, NOW)
    assert saved.written == [
        "worry/01-when-work-keeps-you-up.md",
        "worry/02-myth-just-relax.md",
        "worry/series.yaml",
    ]
    assert_schedules_hold_only_valid_series(project)
