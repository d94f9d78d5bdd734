"""Reading an import file (CSV or JSON, its header and cells) into checked people and problems."""

from __future__ import annotations

import csv
import datetime as dt
import io
import itertools
import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from operator import itemgetter
from typing import IO, Any

from newsletter.services import import_sources
from newsletter.services import import_standing as standing
from newsletter.services.export import from_spreadsheet
from newsletter.services.person_fields import (
    CheckedPerson,
    PersonMaker,
    Problem,
    RosterError,
    person_maker,
)
from newsletter.store.models import utcnow

COLUMNS = ("email", "name", "timezone", "series")
_ALIASES = {
    "e-mail": "email",
    "email address": "email",
    "mail": "email",
    "time zone": "timezone",
    "time_zone": "timezone",
    "tz": "timezone",
    "zone": "timezone",
}
JSON_ITEM_MAX = 1 << 20  # characters one person of a JSON file may take (an export's: ~400)
JSON_CHUNK = 1 << 16


OURS = "this newsletter's export or a plain list"


@dataclass(frozen=True)
class Header:
    """Which cell of a row holds each column the import reads; the file's columns it does not
    read (named in the report: an export's are all read, anything else is ignored); the tool
    the file came from, what each of its columns became, and the tags its rows carry (counted
    while they are read: a tool's tags become series where she maps them)."""

    columns: dict[str, int]
    ignored: tuple[str, ...]
    source: str = OURS
    report: tuple[tuple[str, str], ...] = ()
    tags: dict[str, int] = field(default_factory=dict)


def _header_map(header: list[str], line: int = 1) -> Header:
    columns: dict[str, int] = {}
    ignored: list[str] = []
    report: list[tuple[str, str]] = []
    for index, raw in enumerate(header):
        name = raw.strip().lower()
        name = _ALIASES.get(name, name)
        if (name in COLUMNS or name in standing.STANDING_COLUMNS) and name not in columns:
            columns[name] = index
            report.append((raw.strip()[:40], name.replace("_", " ")))
        elif raw.strip():
            ignored.append(raw.strip()[:40])
            report.append((raw.strip()[:40], "ignored"))
    if "email" not in columns:
        raise RosterError(
            f"line {line} must be a header naming the columns: email, name, timezone, series"
        )
    return Header(columns, tuple(dict.fromkeys(ignored)), report=tuple(report))


# a tool's row, once converted, has our export's columns in their order
_CONVERTED = {name: i for i, name in enumerate(COLUMNS + standing.STANDING_COLUMNS)}


def sniff_delimiter(header_line: str) -> str:
    """The header's most frequent of comma, semicolon (spreadsheets in many locales) and tab
    ("tab-delimited text"); comma on a tie."""
    return max(",;\t", key=header_line.count)


Seen = Callable[[Header], None]


def read_rows(
    source: IO[bytes],
    *,
    default_timezone: str,
    known_series: set[str],
    confirmed: bool = False,
    now: dt.datetime | None = None,
    header_seen: Seen | None = None,
    tag_series: Mapping[str, str] | None = None,
) -> Iterator[CheckedPerson | Problem]:
    """Stream valid people and problems from a CSV file (UTF-8, with or without BOM), another
    tool's export (import_sources: `tag_series` maps its tags to series) or a JSON array of
    people (the JSON export); `header_seen` is told the columns once they are known.
    `confirmed` and `now` settle rows with standing columns (import_standing)."""
    text = io.TextIOWrapper(source, encoding="utf-8-sig", errors="replace", newline="")
    seen = header_seen or (lambda _header: None)
    try:
        first = text.readline()
        line = 1  # the last physical line read
        while first and not first.strip():  # blank lines above the header
            first = text.readline()
            line += 1
        if not first.strip():
            raise RosterError("the file is empty")
        if "\ufffd" in first or "\x00" in first:  # UTF-16 ("Unicode text"), a legacy code page
            raise RosterError(
                f"line {line} is not UTF-8 text: save the file as CSV UTF-8 and try again"
            )
        if first.lstrip().startswith("["):
            header, rows = _json_rows(text, first, line)
            spreadsheet = False
        else:
            header, rows = _csv_rows(text, first, line, tag_series or {}, known_series)
            spreadsheet = True
        seen(header)
        make = person_maker(default_timezone=default_timezone, known_series=known_series)
        stand = None
        if any(name in header.columns for name in standing.STANDING_COLUMNS):
            stand = standing.standing_maker(confirmed=confirmed, now=now or utcnow())
        yield from _people(header, rows, make, stand, spreadsheet)
    finally:
        text.detach()  # leave the caller's file open


Rows = Iterator[tuple[int, list[str]] | Problem]


def _csv_rows(
    text: IO[str],
    first: str,
    header_line: int,
    tag_series: Mapping[str, str],
    known_series: set[str],
) -> tuple[Header, Rows]:
    delimiter = sniff_delimiter(first)
    cells = next(csv.reader([first], delimiter=delimiter))
    plan = import_sources.plan(cells, tag_series, known_series)
    if plan is None:
        header = _header_map(cells, header_line)
    else:  # another tool's export: each row converted into our export's columns
        ignored = tuple(column for column, became in plan.columns if became == "ignored")
        header = Header(_CONVERTED, ignored, plan.title, plan.columns, plan.tags)
    reader = csv.reader(text, delimiter=delimiter)

    def rows() -> Rows:
        line_end = header_line
        while True:
            start = line_end + 1
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                yield Problem(
                    start,
                    f"unreadable CSV ({exc}); this row and the rest of the file were not read",
                )
                return
            line_end = header_line + reader.line_num
            yield start, row

    if plan is not None:
        convert = plan.convert
        return header, (
            item if isinstance(item, Problem) else (item[0], convert(item[1])) for item in rows()
        )
    return header, rows()


def _json_cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return " ".join(str(v) for v in value)
    return str(value)


def _json_rows(text: IO[str], first: str, line: int) -> tuple[Header, Rows]:
    """A JSON array of objects (the JSON export), decoded one object at a time: memory stays
    bounded whatever the file's length. The header is the first object's keys; each object's
    line is where it starts."""
    items = _json_items(text, first, line)
    head = next(items, None)
    if head is None:
        return _header_map(list(COLUMNS), line), iter(())
    if isinstance(head, Problem):
        raise RosterError(f"line {head.line}: {head.reason}")
    keys = list(head[1])
    header = _header_map(keys, head[0])

    def rows() -> Rows:
        for item in itertools.chain([head], items):
            if isinstance(item, Problem):
                yield item
                continue
            start, person = item
            yield start, [_json_cell(person.get(key)) for key in keys]

    return header, rows()


def _json_items(
    text: IO[str], first: str, line: int
) -> Iterator[tuple[int, dict[str, Any]] | Problem]:
    decoder = json.JSONDecoder()
    buffer = first[first.index("[") + 1 :]
    pos, ended = 0, False
    while True:
        while True:  # the separators before the next item
            while pos < len(buffer) and buffer[pos] in " \t\r\n,":
                line += buffer[pos] == "\n"
                pos += 1
            if pos < len(buffer) or ended:
                break
            buffer, pos = text.read(JSON_CHUNK), 0
            ended = not buffer
        if pos >= len(buffer):
            yield Problem(line, "unreadable JSON: the list does not end with ]")
            return
        if buffer[pos] == "]":
            return
        while True:
            try:
                item, end = decoder.raw_decode(buffer, pos)
                break
            except json.JSONDecodeError:
                more = "" if ended else text.read(JSON_CHUNK)
                if not more or len(buffer) - pos > JSON_ITEM_MAX:
                    yield Problem(line, "unreadable JSON; this item and the rest were not read")
                    return
                buffer, pos = buffer[pos:] + more, 0
        if not isinstance(item, dict):
            yield Problem(line, "each item of a JSON list must be one person ({…})")
        else:
            yield line, item
        line += buffer.count("\n", pos, end)
        pos = end
        if pos > JSON_CHUNK:
            buffer, pos = buffer[pos:], 0


def _people(
    header: Header,
    rows: Rows,
    make: PersonMaker,
    stand: standing.StandingMaker | None,
    spreadsheet: bool,
) -> Iterator[CheckedPerson | Problem]:
    # email, name, timezone, series in one call; a column the file lacks reads the None put
    # at the end of each row, a cell missing from a short row reads as empty
    columns = header.columns
    indices = [columns.get(name) for name in COLUMNS]
    extra = [columns.get(name) for name in standing.STANDING_COLUMNS]
    width = max(i for i in indices + extra if i is not None) + 1
    pick = itemgetter(*(-1 if i is None else i for i in indices))
    pick_standing = itemgetter(*(-1 if i is None else i for i in extra))
    for item in rows:
        if isinstance(item, Problem):
            yield item
            continue
        start, row = item
        whole = "".join(row)  # one string to test: blank row, replacement characters
        if not whole.strip():
            continue
        if "\ufffd" in whole:
            yield Problem(start, "not UTF-8 text (save the file as CSV UTF-8)")
            continue
        if spreadsheet and "'" in whole:  # a cell the export neutralised ('=…) loses it
            row = [from_spreadsheet(c) for c in row]
        if len(row) < width:
            row += [""] * (width - len(row))
        row.append(None)  # type: ignore[arg-type]  # what an absent column reads
        email, name, zone, series = pick(row)
        try:
            if stand is None:
                yield make(start, email or "", name, zone, series)
                continue
            no_series = (series or "").strip() == standing.NO_SERIES
            person = make(start, email or "", name, zone, "" if no_series else series)
            yield person._replace(standing=stand(pick_standing(row), no_series))
        except ValueError as exc:
            yield Problem(start, str(exc))
