"""The series file writer: values read back exactly as written, names made from titles."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from newsletter.content import names, writing
from newsletter.content import series as content
from newsletter.content.writing import PartText, SeriesText

TRICKY = [
    "Myth 1: going to therapy means you're weak",
    "yes",
    "123",
    "09:00",
    "#not a comment",
    "- not a list",
    "'quoted' and \"double\"",
    "ends with a colon:",
    "Ünïcödé — and “quotes”",
    "a \\ backslash",
    "null",
    "@at the start",
    "{braces}",
]


@pytest.mark.parametrize("value", TRICKY)
def test_a_value_reads_back_as_the_same_text(value: str) -> None:
    written = writing.part_markdown(PartText(title=value, summary="S", body="B"))
    title_line = written.split("\n")[1]
    assert title_line.startswith("title: ")
    node = yaml.compose(title_line, Loader=yaml.SafeLoader)
    assert node.value[0][1].value == value


def test_plain_words_stay_unquoted() -> None:
    written = writing.part_markdown(PartText("Talking to your manager", "Myth: just relax", "B"))
    assert written == "---\ntitle: Talking to your manager\nsummary: 'Myth: just relax'\n---\nB\n"


def test_slugs_and_part_names_come_from_titles() -> None:
    assert writing.slugify("Anxiety at Work!") == "anxiety-at-work"
    assert writing.slugify("Ça va — l'été") == "ca-va-l-ete"
    assert names.is_slug("anxiety-at-work") and not names.is_slug("Anxiety")
    taken = {"02-more.md"}
    assert writing.part_filename(2, "More", taken) == "02-more-2.md"
    assert writing.part_filename(3, "!!!", set()) == "03-part.md"


def test_every_tricky_value_survives_a_whole_series(tmp_path: Path) -> None:
    parts = [
        PartText(title=v, summary=v, body=f"Body {i}.", filename=f"{i:02d}-p.md")
        for i, v in enumerate(TRICKY, start=1)
    ]
    text = SeriesText(
        slug="tricky",
        title="Tricky: values",
        description="First line.\n\nSecond paragraph.",
        send_day=6,
        send_time="21:05",
        cadence="fortnightly",
        order=7,
        parts=parts,
    )
    (tmp_path / "series.yaml").write_text(writing.series_yaml(text))
    for part in parts:
        (tmp_path / part.filename).write_text(writing.part_markdown(part))
    spec = content.load_series(tmp_path)
    assert (spec.title, spec.description, spec.send_day, spec.send_time) == (
        "Tricky: values",
        "First line.\n\nSecond paragraph.",
        6,
        "21:05",
    )
    assert (spec.cadence, spec.order) == ("fortnightly", 7)
    assert [(p.title, p.summary) for p in spec.parts] == [(v, v) for v in TRICKY]


LINE_BREAKS = ["\u2028", "\u2029", "\x85", "\x0b", "\x0c", "\x1c", "\x00", "\x7f", "\n", "\t"]


@pytest.mark.parametrize("char", LINE_BREAKS)
def test_a_character_yaml_reads_as_a_break_is_never_written(char: str) -> None:
    """U+2028 in a value once became a line of its own in series.yaml: a key of the writer's
    choosing. Each writer refuses such a value, naming the field, or (titles and summaries,
    written on one line) turns it into a space; never is it written."""
    good = SeriesText("s", "T", "", 0, "09:00", parts=[PartText("A", "B", "C", "01-a.md")])
    keys = ["slug", "title", "send_day", "send_time", "cadence", "parts"]
    assert writing.unwritable("a" + char + "b") == f"U+{ord(char):04X}"
    for field, value in (
        ("title", "T" + char + "x"),
        ("send_time", "09:00" + char + "cadence: weekly"),
        ("description", "a" + char + "send_day: sunday"),
        ("cadence", "weekly" + char),
    ):
        bad = replace(good, **{field: value})
        try:
            written = writing.series_yaml(bad)
        except ValueError as refused:
            assert str(refused).startswith(f"{field} contains")
            continue
        read = yaml.safe_load(written)
        assert [k for k in read if k != "description"] == keys
        if field == "title":
            assert read["title"] == "T x"
        else:  # newlines and tabs are text in a description (a literal block)
            assert field == "description" and char in "\n\t"
            assert read["description"] == writing.multi_line(value)
    try:
        part = writing.part_markdown(PartText("A" + char, "B" + char, "C"))
    except ValueError as refused:
        assert str(refused).startswith("title contains")
    else:
        assert yaml.safe_load(part.split("---\n")[1]) == {"title": "A", "summary": "B"}


WRITABLE = st.text(
    st.characters(blacklist_categories=["Cs", "Cc"], blacklist_characters="\u2028\u2029"),
    min_size=1,
    max_size=40,
).filter(lambda v: v.strip() != "")


@hsettings(max_examples=150, derandomize=True, deadline=None)
@given(title=WRITABLE, summary=WRITABLE, description=WRITABLE, second=WRITABLE)
def test_every_writable_value_reads_back_and_adds_no_key(
    title: str, summary: str, description: str, second: str
) -> None:
    """Whatever the writer accepts, YAML reads back as exactly those values and keys."""
    text = SeriesText(
        slug="s",
        title=title,
        description=description + "\n" + second,
        send_day=2,
        send_time="07:15",
        parts=[PartText(title, summary, "Body.", "01-a.md")],
    )
    data = yaml.safe_load(writing.series_yaml(text))
    assert list(data) == [
        "slug",
        "title",
        "description",
        "send_day",
        "send_time",
        "cadence",
        "parts",
    ]
    assert data["title"] == writing.one_line(title)
    assert data["description"] == writing.multi_line(text.description)
    assert data["send_time"] == "07:15" and data["parts"] == ["01-a.md"]
    front = writing.part_markdown(text.parts[0]).split("---\n")[1]
    assert yaml.safe_load(front) == {
        "title": writing.one_line(title),
        "summary": writing.one_line(summary),
    }
