"""Writing series files in the documented format (series.yaml + Markdown parts); pure, no I/O.

What the browser editor writes is what a person would write by hand (README, "Writing a
series"): `series.yaml` with its keys in the documented order, `send_time` quoted, weekday
names in lower case; each part as `---`, `title:`, `summary:`, `---`, then the Markdown.
Every file goes through YAML's own emitter (never formatted by hand), which quotes a value only
when YAML needs it, so `git diff schedules/` reads like a hand edit. Reading a file written here
gives back the same values, and writing those values again gives the same bytes. A value YAML
would read as a line break (U+0085, U+2028, U+2029) or that holds a control character can't be
written: `unwritable` names it, and the writers refuse it (ValueError naming the field).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any

import yaml

from newsletter.core.vocabulary import WEEKDAYS, WEEKLY

_NOT_SLUG = re.compile(r"[^a-z0-9]+")
# What no written value may hold: C0 and C1 controls (U+0085 among them), the Unicode line and
# paragraph separators YAML reads as line breaks, and lone surrogates; a one-line field holds
# no tab or newline either.
_UNWRITABLE_LINES = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
_UNWRITABLE_ONE_LINE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
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


def unwritable(value: str, *, lines: bool = False) -> str | None:
    """The first character of `value` no file may hold ("U+2028"), or None; `lines`: a
    multi-line field (a description), where tabs and newlines are text."""
    found = (_UNWRITABLE_LINES if lines else _UNWRITABLE_ONE_LINE).search(value)
    return None if found is None else f"U+{ord(found.group()):04X}"


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


class _Dumper(yaml.SafeDumper):
    """YAML's safe emitter, with a list indented under its key ("parts:\n  - 01-a.md") as
    people write it."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        return super().increase_indent(flow, False)


class _Quoted(str):
    """A value always written double-quoted (send_time: "09:00", never read as a number)."""


class _Block(str):
    """A multi-line value written as a literal block (description: |-)."""


def _styled(style: str) -> Any:
    def represent(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
        return dumper.represent_scalar("tag:yaml.org,2002:str", str(value), style=style)

    return represent


_Dumper.add_representer(_Quoted, _styled('"'))
_Dumper.add_representer(_Block, _styled("|"))


def _document(values: dict[str, Any]) -> str:
    """`values` as a YAML mapping in this key order, each value refused when unwritable."""
    for key, value in values.items():
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, str):
                bad = unwritable(item, lines=isinstance(item, _Block))
                if bad is not None:
                    raise ValueError(f"{key} contains a character that can't be written ({bad})")
    return yaml.dump(
        values, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=10**6, indent=2
    )


def series_yaml(series: SeriesText) -> str:
    """The series.yaml text for `series`."""
    values: dict[str, Any] = {"slug": series.slug, "title": one_line(series.title)}
    description = multi_line(series.description)
    if description:
        values["description"] = _Block(description) if "\n" in description else description
    values["send_day"] = WEEKDAYS[series.send_day]
    values["send_time"] = _Quoted(series.send_time)
    values["cadence"] = series.cadence
    if series.order is not None:
        values["order"] = series.order
    values["parts"] = [part.filename for part in series.parts]
    return _document(values)


def part_markdown(part: PartText) -> str:
    """A part file: front matter (title, summary) and the Markdown body."""
    front = _document({"title": one_line(part.title), "summary": one_line(part.summary)})
    return f"---\n{front}---\n{body_text(part.body)}"


def part_filename(number: int, title: str, taken: set[str]) -> str:
    """A new part's file name: its position and title ("03-when-work-feels-too-much.md"),
    made unique among `taken`."""
    stem = f"{number:02d}-{slugify(title, 50) or 'part'}"
    name, extra = f"{stem}.md", 2
    while name in taken:
        name, extra = f"{stem}-{extra}.md", extra + 1
    return name
