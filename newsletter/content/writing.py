"""Writing series files in the documented format (series.yaml + Markdown parts); pure, no I/O.

What the browser editor writes is what a person would write by hand (README, "Writing a
series"): `series.yaml` with its keys in the documented order, `send_time` quoted, weekday
names in lower case; each part as `---`, `title:`, `summary:`, `---`, then the Markdown.
Values are quoted only when YAML needs it, so `git diff schedules/` reads like a hand edit.
Reading a file written here gives back the same values, and writing those values again gives
the same bytes.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field

import yaml

from newsletter.core.vocabulary import WEEKDAYS, WEEKLY

_NOT_SLUG = re.compile(r"[^a-z0-9]+")
_SLUG = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
SLUG_WORDS = 60  # characters kept from a title when it names a slug or a part file


@dataclass(frozen=True)
class PartText:
    """One part as the writer sees it: subject (title), inbox preview line (summary), body."""

    title: str
    summary: str
    body: str
    filename: str = ""  # "" for a part that has no file yet


@dataclass(frozen=True)
class SeriesText:
    """A series as the writer sees it; `order` is kept from the file (None: not given)."""

    slug: str
    title: str
    description: str
    send_day: int
    send_time: str
    cadence: str = WEEKLY
    order: int | None = None
    parts: list[PartText] = field(default_factory=list)


def slugify(text: str, limit: int = SLUG_WORDS) -> str:
    """Lower-case ASCII words joined by single hyphens ("Anxiety at Work!" -> anxiety-at-work)."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    slug = _NOT_SLUG.sub("-", ascii_text.lower()).strip("-")
    return slug[:limit].rstrip("-")


def is_slug(value: str) -> bool:
    return bool(_SLUG.match(value)) and len(value) <= 100


def one_line(value: str) -> str:
    """Titles and summaries as the reader reads them back: runs of whitespace as one space."""
    return " ".join(value.split())


def multi_line(value: str) -> str:
    """A description or body: newlines as "\\n", no trailing spaces at line ends, trimmed."""
    lines = value.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return "\n".join(line.rstrip() for line in lines).strip("\n").strip()


def body_text(value: str) -> str:
    """A part's Markdown as series.py stores it: trimmed, ending in one newline."""
    return multi_line(value) + "\n"


def scalar(value: str) -> str:
    """One YAML scalar on one line: plain when YAML reads it back as the same text, else quoted."""
    dumped = yaml.safe_dump(value, allow_unicode=True, width=10**6, default_flow_style=True)
    text = dumped.removesuffix("\n...\n").rstrip("\n")
    if "\n" in text:  # safe_dump folds some strings; a double-quoted scalar never needs to
        text = '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return text


def _block(value: str) -> str:
    """A multi-line description as a literal block (`|-`), each line indented two spaces."""
    lines = [("  " + line) if line else "" for line in value.split("\n")]
    return "|-\n" + "\n".join(lines)


def series_yaml(series: SeriesText) -> str:
    """The series.yaml text for `series`."""
    lines = [f"slug: {series.slug}", f"title: {scalar(one_line(series.title))}"]
    description = multi_line(series.description)
    if description:
        if "\n" in description:
            lines.append(f"description: {_block(description)}")
        else:
            lines.append(f"description: {scalar(description)}")
    lines.append(f"send_day: {WEEKDAYS[series.send_day]}")
    lines.append(f'send_time: "{series.send_time}"')
    lines.append(f"cadence: {series.cadence}")
    if series.order is not None:
        lines.append(f"order: {series.order}")
    lines.append("parts:")
    lines.extend(f"  - {scalar(part.filename)}" for part in series.parts)
    return "\n".join(lines) + "\n"


def part_markdown(part: PartText) -> str:
    """A part file: front matter (title, summary) and the Markdown body."""
    return (
        "---\n"
        f"title: {scalar(one_line(part.title))}\n"
        f"summary: {scalar(one_line(part.summary))}\n"
        "---\n"
        f"{body_text(part.body)}"
    )


def part_filename(number: int, title: str, taken: set[str]) -> str:
    """A new part's file name: its position and title ("03-when-work-feels-too-much.md"),
    made unique among `taken`."""
    stem = f"{number:02d}-{slugify(title, 50) or 'part'}"
    name, extra = f"{stem}.md", 2
    while name in taken:
        name, extra = f"{stem}-{extra}.md", extra + 1
    return name
