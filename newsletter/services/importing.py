"""CSV import of subscribers: read and check every row (a dry run first), then add in batches."""

from __future__ import annotations

import csv
import datetime as dt
import io
import itertools
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from operator import itemgetter
from pathlib import Path
from typing import IO, Any

from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from newsletter.core.config import Settings
from newsletter.core.identity import new_public_ids
from newsletter.engine import enrollment, schedule
from newsletter.queue.dueset import RedisQueue
from newsletter.services import import_standing as standing
from newsletter.services import people
from newsletter.services.export import from_spreadsheet
from newsletter.services.person_fields import (
    Person,
    PersonMaker,
    Problem,
    RosterError,
    activate,
    known_series,
    person_maker,
)
from newsletter.store.db import get_engine
from newsletter.store.intake import Common, Intake, NewRow, intake
from newsletter.store.models import ACTIVE, PENDING, Subscriber, Suppression, utcnow

BATCH_ROWS = 5000  # rows validated, checked and written together (one transaction)
ERASED = "email: this address was erased on request; it can't be imported again"
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
IMPORT_CONSENTED = standing.IMPORT_CONSENTED
IMPORT = standing.IMPORT
JSON_ITEM_MAX = 1 << 20  # characters one person of a JSON file may take (an export's: ~400)
JSON_CHUNK = 1 << 16


# --- reading CSV or JSON -------------------------------------------------------------------


@dataclass(frozen=True)
class Header:
    """Which cell of a row holds each column the import reads; the file's columns it does not
    read (named in the report: an export's are all read, anything else is ignored)."""

    columns: dict[str, int]
    ignored: tuple[str, ...]


def _header_map(header: list[str], line: int = 1) -> Header:
    columns: dict[str, int] = {}
    ignored: list[str] = []
    for index, raw in enumerate(header):
        name = raw.strip().lower()
        name = _ALIASES.get(name, name)
        if (name in COLUMNS or name in standing.STANDING_COLUMNS) and name not in columns:
            columns[name] = index
        elif raw.strip():
            ignored.append(raw.strip()[:40])
    if "email" not in columns:
        raise RosterError(
            f"line {line} must be a header naming the columns: email, name, timezone, series"
        )
    return Header(columns, tuple(dict.fromkeys(ignored)))


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
) -> Iterator[Person | Problem]:
    """Stream valid people and problems from a CSV file (UTF-8, with or without BOM) or a JSON
    array of people (the JSON export); `header_seen` is told the columns once they are known.
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
            header, rows = _csv_rows(text, first, line)
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


def _csv_rows(text: IO[str], first: str, header_line: int) -> tuple[Header, Rows]:
    delimiter = sniff_delimiter(first)
    header = _header_map(next(csv.reader([first], delimiter=delimiter)), header_line)
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
) -> Iterator[Person | Problem]:
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


# --- import --------------------------------------------------------------------------------


@dataclass
class ImportReport:
    """What an import found (dry run) or did."""

    dry_run: bool
    confirmed: bool
    rows: int = 0
    new: int = 0
    existing: int = 0
    duplicates: int = 0  # repeated in the file (ignoring case): counted once
    invalid: list[Problem] = field(default_factory=list)
    confirmations_sent: int = 0
    confirmations_failed: int = 0
    halted: str | None = None  # why confirmations were not sent: sending is halted
    ignored_columns: list[str] = field(default_factory=list)  # the file's, not imported
    states: dict[str, int] = field(default_factory=dict)  # new people by the status they get

    def as_dict(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "confirmed": self.confirmed,
            "rows": self.rows,
            "new": self.new,
            "existing": self.existing,
            "duplicates": self.duplicates,
            "invalid": [{"line": p.line, "reason": p.reason} for p in self.invalid],
            "confirmations_sent": self.confirmations_sent,
            "confirmations_failed": self.confirmations_failed,
            "halted": self.halted,
            "ignored_columns": list(self.ignored_columns),
            "states": dict(self.states),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ImportReport:
        """The report `as_dict` wrote (a background import's, kept in Redis)."""
        fields = {k: v for k, v in data.items() if k != "invalid"}
        invalid = [Problem(int(p["line"]), str(p["reason"])) for p in data.get("invalid", [])]
        return cls(**fields, invalid=invalid)


def _batches(items: Iterator[Person | Problem], size: int) -> Iterator[list[Person | Problem]]:
    batch: list[Person | Problem] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _common(confirmed: bool, now: dt.datetime) -> Common:
    """What `person_fields.new_subscriber` writes for every imported person (same columns, in bulk)."""
    method = IMPORT_CONSENTED if confirmed else IMPORT
    return Common(
        status=ACTIVE if confirmed else PENDING,
        consent_method=method,
        consent_at=now if confirmed else None,
        consent_form=method if confirmed else None,
        confirmed_at=now if confirmed else None,
        now=now,
    )


def import_csv(
    settings: Settings,
    source: IO[bytes] | Path,
    *,
    dry_run: bool,
    confirmed: bool = False,
    now: dt.datetime | None = None,
    progress: Callable[[int], None] | None = None,
) -> ImportReport:
    """Check (dry run) or import a CSV file or a JSON export in batches; new people are pending
    unless `confirmed`, or as the file's standing columns say (services.import_standing).

    Streamed: one batch of rows in memory at a time, whatever the file's length (repeated
    addresses are found in a temp table, store.intake). Each batch is three reads and one
    bulk write, committed on its own (a failure keeps the batches before it)."""
    if isinstance(source, Path):
        with source.open("rb") as handle:
            return import_csv(
                settings, handle, dry_run=dry_run, confirmed=confirmed, now=now, progress=progress
            )
    now = now or utcnow()
    report = ImportReport(dry_run=dry_run, confirmed=confirmed)
    common = _common(confirmed, now)

    def header_seen(header: Header) -> None:
        report.ignored_columns = list(header.ignored)

    with (
        get_engine(settings.database_url).connect() as connection,
        Session(bind=connection, expire_on_commit=False) as session,
        intake(session) as into,
    ):
        slugs = known_series(session)
        every = frozenset(s.slug for s in schedule.series_in_queue_order(session))
        rows = read_rows(
            source,
            default_timezone=settings.default_timezone,
            known_series=slugs,
            confirmed=confirmed,
            now=now,
            header_seen=header_seen,
        )
        for batch in _batches(rows, BATCH_ROWS):
            added = _import_batch(session, into, batch, report, common, settings.secret, every)
            session.commit()
            if added.subscribers:
                _after_commit(settings, report, added)
            if progress is not None:
                progress(len(batch))
            del batch, added  # not alive while the next batch is read: one batch at a time
    report.invalid.sort(key=lambda p: p.line)
    return report


def _status(person: Person, common: Common) -> str:
    return common.status if person.standing is None else person.standing.status


def _count_states(report: ImportReport, persons: Iterable[Person], common: Common) -> None:
    for person in persons:
        status = _status(person, common)
        report.states[status] = report.states.get(status, 0) + 1


def _import_batch(
    session: Session,
    into: Intake,
    batch: list[Person | Problem],
    report: ImportReport,
    common: Common,
    secret: str,
    every: frozenset[str],
) -> Added:
    """Count and (unless a dry run) write one batch; who was added. `every`: the slugs of the
    series a new reader is enrolled in when they chose none."""
    persons: dict[str, Person] = {}  # key -> the first row of each address in the batch
    for item in batch:
        report.rows += 1
        if isinstance(item, Problem):
            report.invalid.append(item)
            continue
        key = item.key
        if key in persons:
            report.duplicates += 1
        else:
            persons[key] = item
    fresh = into.first_seen(list(persons))
    report.duplicates += len(persons) - len(fresh)
    candidates = {key: p for key, p in persons.items() if key in fresh}
    existing = into.existing(list(candidates))
    report.existing += len(existing)
    unknown = [key for key in candidates if key not in existing]
    # keyed or (stored before revision 0004) plain suppression keys, two hashes per address:
    # computed only when anyone was ever erased (usually nobody)
    erased: set[str] = set()
    if unknown and session.scalar(select(exists().where(Suppression.id.is_not(None)))):
        erased = people.suppressed_among(session, secret, [candidates[k].email for k in unknown])
    new: dict[str, Person] = {}
    for key in unknown:
        if key in erased:
            report.invalid.append(Problem(candidates[key].line, ERASED))
        else:
            new[key] = candidates[key]
    if report.dry_run:
        report.new += len(new)
        _count_states(report, new.values(), common)
        return Added([])
    ids = new_public_ids(len(new))
    rows = [_row(key, p, i) for (key, p), i in zip(new.items(), ids, strict=True)]
    standings = [p.standing for p in new.values() if p.standing is not None]
    if standings:  # the file has standing columns: every row has its own (import_standing)
        added = into.insert_standing(list(zip(rows, standings, strict=True)), common.now)
    else:
        added = into.insert(rows, common)
    report.new += len(added)
    report.existing += len(new) - len(added)  # added meanwhile by someone else
    written = [(added[key], p) for key, p in new.items() if key in added]
    _count_states(report, (p for _, p in written), common)
    pending = [sub_id for sub_id, p in written if _status(p, common) == PENDING]
    active = [(sub_id, p) for sub_id, p in written if _status(p, common) == ACTIVE]
    if not active:
        return Added([sub_id for sub_id, _ in written], pending=pending)
    # Everyone taking every series is enrolled in bulk (same rows as enroll); people who chose
    # some series one by one; people who take none (an export's "(none)") are not enrolled.
    takes = [(i, p) for i, p in active if p.standing is None or not p.standing.no_series]
    everything = [i for i, p in takes if not p.series or every <= set(p.series)]
    chose = [(i, p) for i, p in takes if p.series and not every <= set(p.series)]
    due = enrollment.enroll_new_due(session, everything, common.now)
    for sub_id, person in chose:
        sub = session.get(Subscriber, sub_id)
        assert sub is not None
        activate(session, sub, person.series, common.now)
    session.expunge_all()
    return Added([sub_id for sub_id, _ in written], due, [i for i, _ in chose], pending)


@dataclass
class Added:
    """Who a batch added: all of them, (enrollment id, due) of those enrolled in bulk (all
    Redis needs of them: new people have nothing there yet), those who chose their series,
    those left pending (a confirmation email, unless the import was `--confirmed`)."""

    subscribers: list[int]
    due: list[tuple[int, dt.datetime]] = field(default_factory=list)
    chose_series: list[int] = field(default_factory=list)
    pending: list[int] = field(default_factory=list)


def _row(key: str, person: Person, public_id: str) -> NewRow:
    chosen = person.series
    if person.standing is not None and person.standing.no_series:
        requested: str | None = "[]"  # takes no series (None would be every series)
    else:
        requested = json.dumps(list(chosen)) if chosen else None
    return NewRow(public_id, person.email, key, person.name, person.timezone, requested)


def _after_commit(settings: Settings, report: ImportReport, added: Added) -> None:
    """Redis follows the new enrollments; pending people get their confirmation email (not
    with `--confirmed`, which promises no email)."""
    if added.due:
        RedisQueue(settings).apply(added.due)
    if added.chose_series:
        people.sync_subscribers(settings, added.chose_series)
    if report.confirmed or not added.pending:
        return
    from newsletter.services import mailing  # the renderer (jinja2): only pending imports mail

    mailed = mailing.send_confirmations(settings, added.pending)
    report.confirmations_sent += mailed.sent
    report.confirmations_failed += mailed.failed
    report.halted = report.halted or mailed.halted
