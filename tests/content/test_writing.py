"""The series file writer: values read back exactly as written, names made from titles."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from newsletter.content import series as content
from newsletter.content import writing
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
def test_a_scalar_reads_back_as_the_same_text(value: str) -> None:
    line = f"title: {writing.scalar(value)}"
    assert "\n" not in line
    node = yaml.compose(line, Loader=yaml.SafeLoader)
    assert node.value[0][1].value == value


def test_plain_words_stay_unquoted() -> None:
    assert writing.scalar("Talking to your manager") == "Talking to your manager"
    assert writing.scalar("Myth: just relax") == "'Myth: just relax'"


def test_slugs_and_part_names_come_from_titles() -> None:
    assert writing.slugify("Anxiety at Work!") == "anxiety-at-work"
    assert writing.slugify("Ça va — l'été") == "ca-va-l-ete"
    assert writing.is_slug("anxiety-at-work") and not writing.is_slug("Anxiety")
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
