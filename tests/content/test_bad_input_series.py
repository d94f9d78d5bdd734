"""Bad series files never crash or half-sync: each problem names the file and the line.

The corpus (tests/corpus/series/<case>/) holds one broken series per folder and, in EXPECT, the
"file:line" places its problems must be reported at. Hypothesis then writes random series.yaml
files and Markdown parts: validation must return readable problems or accept the series, and
whatever it accepts must store in the database as it is (on PostgreSQL too).
"""

from __future__ import annotations

import re
import shutil
import string
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from paths import ROOT, TESTS
from pydantic import SecretStr
from sqlalchemy import select
from typer.testing import CliRunner
from web_helpers import admin_app_client, csrf, sign_in

from newsletter.cli import app
from newsletter.content import series as content
from newsletter.core.config import Settings
from newsletter.store import db
from newsletter.store import series as series_store
from newsletter.store.db import session_scope
from newsletter.store.models import Part, Series

CORPUS = TESTS / "corpus" / "series"
CASES = sorted(p.name for p in CORPUS.iterdir() if p.is_dir())
PROBLEM = re.compile(r"^(?P<path>.+?):(?P<line>\d+): (?P<message>\S.*)$")
PASSWORD = "a calm and long password"

PROPERTY = hsettings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def problems_of(folder: Path) -> list[tuple[str, int, str]]:
    """validate()'s problems as (file name, line, message); each must be one well-formed line."""
    found = []
    for problem in content.validate(folder):
        match = PROBLEM.match(problem)
        assert match, f"not 'file:line: message': {problem!r}"
        assert "\n" not in problem and "Traceback" not in problem
        path = Path(match["path"])
        assert path.is_relative_to(folder), problem
        line = int(match["line"])
        assert line >= 1
        if path.is_file():  # the line exists in that file
            lines = path.read_bytes().replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
            assert line <= len(lines), problem
        found.append((path.name, line, match["message"]))
    return found


@pytest.mark.parametrize("case", CASES)
def test_corpus_problems_name_file_and_line(case: str) -> None:
    folder = CORPUS / case
    found = problems_of(folder)
    assert found, f"{case}: accepted"
    places = {f"{name}:{line}" for name, line, _ in found}
    expected = set((folder / "EXPECT").read_text().split())
    assert expected <= places, f"{case}: expected {sorted(expected)}, got {found}"
    with pytest.raises(content.ContentError) as caught:
        content.load_all(folder)
    assert caught.value.errors == [f"{folder / n}:{line}: {m}" for n, line, m in found]


def test_corpus_messages_say_what_is_wrong() -> None:
    def messages(case: str) -> str:
        return " | ".join(m for _, _, m in problems_of(CORPUS / case))

    assert "whole number" in messages("huge_order")
    assert "whole number" in messages("unicode_digit_order")
    assert "control character" in messages("control_in_title")
    assert "control character" in messages("part_nul_body")
    assert "control character" in messages("part_control_summary")
    assert "not UTF-8" in messages("part_invalid_utf8")
    assert "too long" in messages("long_part_name")
    assert "not valid YAML" in messages("nul")
    assert "expected a mapping" in messages("not_a_mapping")


def test_cli_validate_reports_every_corpus_case(settings: Settings) -> None:
    runner = CliRunner()
    for case in CASES:
        result = runner.invoke(app, ["series", "validate", str(CORPUS / case)])
        assert result.exit_code == 1, (case, result.output)
        assert result.exception is None or isinstance(result.exception, SystemExit), case
        assert "Traceback" not in result.output
        name, line = (CORPUS / case / "EXPECT").read_text().split()[0].split(":")
        assert f"{name}:{line}:" in result.output.replace("\n", ""), (case, result.output)


# --- a failing sync changes nothing --------------------------------------------------------


def snapshot(settings: Settings) -> list[tuple[object, ...]]:
    with session_scope(settings.database_url) as session:
        rows: list[tuple[object, ...]] = [
            (s.slug, s.title, s.description, s.order, s.send_day, s.send_time, s.content_hash)
            for s in session.scalars(select(Series).order_by(Series.slug))
        ]
        rows += [
            (p.series_id, p.number, p.filename, p.title, p.summary, p.body_md)
            for p in session.scalars(select(Part).order_by(Part.series_id, Part.number))
        ]
        return rows


@pytest.fixture
def schedules(tmp_path: Path, settings: Settings) -> Path:
    """A copy of the shipped schedules, synced; tests break it and try again."""
    folder = tmp_path / "schedules"
    shutil.copytree(ROOT / "schedules", folder)
    with session_scope(settings.database_url) as session:
        series_store.sync(session, content.load_all(folder))
    return folder


def break_it(schedules: Path, case: str) -> None:
    """Edit a shipped series (a changed title) and add one broken series from the corpus."""
    myths = schedules / "myths-about-psychotherapy" / "series.yaml"
    myths.write_text(myths.read_text().replace("title: ", "title: Edited ", 1))
    shutil.copytree(CORPUS / case, schedules / f"zz-{case}")


@pytest.mark.parametrize("case", ["huge_order", "part_nul_body", "surrogate_escape", "tabs"])
def test_init_with_one_broken_series_syncs_nothing(
    settings: Settings, schedules: Path, case: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = snapshot(settings)
    break_it(schedules, case)
    monkeypatch.setenv("NEWSLETTER_SCHEDULES_DIR", str(schedules))
    from newsletter.core.config import get_settings

    get_settings.cache_clear()
    result = CliRunner().invoke(app, ["init"])
    get_settings.cache_clear()
    assert result.exit_code == 1, result.output
    assert "nothing synced" in result.output and f"zz-{case}" in result.output
    assert snapshot(settings) == before


def test_admin_reload_with_one_broken_series_syncs_nothing(
    settings: Settings, schedules: Path
) -> None:
    before = snapshot(settings)
    break_it(schedules, "huge_order")
    admin = settings.model_copy(
        update={"admin_password": SecretStr(PASSWORD), "schedules_dir": schedules}
    )
    with admin_app_client(admin) as c:
        sign_in(c, PASSWORD)
        r = c.post("/admin/series/reload", data={"csrf_token": csrf(c, "/admin/series")})
    assert r.status_code == 422
    assert "zz-huge_order" in r.text and "whole number" in r.text
    assert snapshot(settings) == before


# --- properties ----------------------------------------------------------------------------

NASTY = st.sampled_from(
    ["\x00", "\x07", "\x1b", "\t", "\r", "\n", "\r\n", "\u2028", "\u202e", "\ufeff", "\ud800",
     "\x85", "\u200b", "é", "🙂", ":", "#", "&a", "*a", "!!binary", "---", "'", '"', "[", "{",
     "- ", "? ", "|", ">", "%", "@", "`"]
)  # fmt: skip
TEXT = st.one_of(
    st.text(max_size=30),
    st.lists(st.one_of(NASTY, st.text(string.ascii_letters, max_size=5)), max_size=8).map("".join),
)
SCALAR = st.one_of(
    TEXT,
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.sampled_from(
        [
            "tuesday",
            "tue",
            "Tu",
            "09:00",
            "9:30",
            "24:00",
            "2027-02-30",
            "null",
            "~",
            "yes",
            "1e400",
            ".inf",
            "2147483648",
            "99999999999999999999",
            "0x1F",
            "0o17",
            "1_000",
            "[]",
            "{}",
            "weekly",
            "fortnightly",
        ]
    ),
)
KEY = st.one_of(st.sampled_from(content.SERIES_KEYS), TEXT)


GOOD_VALUES = {
    "slug": "fuzzed",
    "title": "Fuzzed",
    "send_day": "monday",
    "send_time": '"08:00"',
    "description": "About it.",
    "cadence": "weekly",
    "order": "3",
}


def styled(draw: st.DrawFn, value: str) -> str:
    """The value as plain, single- or double-quoted YAML (escapes let NUL, surrogates through)."""
    style = draw(st.sampled_from(["plain", "single", "double"]))
    if style == "single":
        return "'" + value.replace("'", "''") + "'"
    if style == "double":
        return '"' + value.encode("unicode_escape").decode("ascii").replace('"', '\\"') + '"'
    return value


def encoded(draw: st.DrawFn, text: str) -> bytes:
    data = text.encode("utf-8", "surrogatepass")  # a lone surrogate is invalid UTF-8 on purpose
    return draw(st.sampled_from([data, data.replace(b"\n", b"\r\n"), b"\xef\xbb\xbf" + data]))


@st.composite
def series_yaml(draw: st.DrawFn) -> bytes:
    """A good series.yaml with a few values (or keys, or lines) replaced by nasty ones."""
    values = dict(GOOD_VALUES)
    for key in draw(st.lists(KEY, max_size=3)):
        values[key] = styled(draw, draw(SCALAR))
    lines = [f"{key}: {value}\n" for key, value in values.items()]
    names = draw(
        st.lists(st.sampled_from(["01-a.md", "02-b.md", "nope.md"]), min_size=1, max_size=3)
        | st.just(["01-a.md", "02-b.md"])
    )
    lines.append("parts:\n" + "".join(f"  - {n}\n" for n in names))
    for _ in range(draw(st.integers(0, 2))):
        lines.insert(draw(st.integers(0, len(lines))), draw(TEXT) + "\n")
    return encoded(draw, "".join(lines))


@st.composite
def part_file(draw: st.DrawFn) -> bytes:
    """A part with nasty title, summary or body text, sometimes broken front matter or bytes."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=200))
    fields = {"title": "A title", "summary": "A summary."}
    for key in draw(st.lists(st.sampled_from(["title", "summary", "x"]), max_size=2)):
        fields[key] = styled(draw, draw(SCALAR))
    body = draw(st.one_of(st.just("Body text.\n"), TEXT))
    closing = draw(st.sampled_from(["---\n"] * 6 + ["--- \n", "", "...\n"]))
    front = "".join(f"{key}: {value}\n" for key, value in fields.items())
    return encoded(draw, "---\n" + front + closing + body)


GOOD_YAML = (
    b'slug: fuzzed\ntitle: Fuzzed\nsend_day: monday\nsend_time: "08:00"\nparts:\n'
    b"  - 01-a.md\n  - 02-b.md\n"
)
GOOD_PART = b"---\ntitle: A\nsummary: S\n---\nBody.\n"


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[Path]:
    folder = tmp_path / "fuzzed"
    folder.mkdir()
    yield folder


def accepted_specs_store(settings: Settings, folder: Path) -> None:
    """What validation accepts, the database stores as it is (rolled back afterwards)."""
    specs = content.load_all(folder)
    session = db._factory(settings.database_url)()
    try:
        series_store.sync(session, specs)
        stored = {p.number: (p.title, p.summary, p.body_md) for p in session.scalars(select(Part))}
        for spec in specs:
            for part in spec.parts:
                assert stored[part.number] == (part.title, part.summary, part.body_md)
    finally:
        session.rollback()
        session.close()


@PROPERTY
@given(yaml_bytes=series_yaml())
def test_any_series_yaml_is_a_clear_problem_or_storable(
    settings: Settings, sandbox: Path, yaml_bytes: bytes
) -> None:
    (sandbox / "series.yaml").write_bytes(yaml_bytes)
    (sandbox / "01-a.md").write_bytes(GOOD_PART)
    (sandbox / "02-b.md").write_bytes(GOOD_PART)
    if not problems_of(sandbox):
        accepted_specs_store(settings, sandbox)


@PROPERTY
@given(part=part_file())
def test_any_part_file_is_a_clear_problem_or_storable(
    settings: Settings, sandbox: Path, part: bytes
) -> None:
    (sandbox / "series.yaml").write_bytes(GOOD_YAML)
    (sandbox / "01-a.md").write_bytes(GOOD_PART)
    (sandbox / "02-b.md").write_bytes(part)
    found = problems_of(sandbox)
    assert all(name in ("02-b.md", "series.yaml") for name, _, _ in found), found
    if not found:
        accepted_specs_store(settings, sandbox)
