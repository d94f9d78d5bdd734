"""CSV import of subscribers: read and check every row (a dry run first), then add in batches."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from operator import itemgetter
from pathlib import Path
from typing import IO, Any

from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from newsletter.core.config import Settings
from newsletter.core.identity import new_public_ids
from newsletter.engine import enrollment
from newsletter.queue.dueset import RedisQueue
from newsletter.services import people
from newsletter.services.export import from_spreadsheet
from newsletter.services.roster import (
    Person,
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
IMPORT_CONSENTED = "import-consented"
IMPORT = "import"


# --- reading CSV ---------------------------------------------------------------------------


def _header_map(header: list[str], line: int = 1) -> dict[str, int]:
    columns: dict[str, int] = {}
    for index, raw in enumerate(header):
        name = raw.strip().lower()
        name = _ALIASES.get(name, name)
        if name in COLUMNS and name not in columns:
            columns[name] = index
    if "email" not in columns:
        raise RosterError(
            f"line {line} must be a header naming the columns: email, name, timezone, series"
        )
    return columns


def sniff_delimiter(header_line: str) -> str:
    """The header's most frequent of comma, semicolon (spreadsheets in many locales) and tab
    ("tab-delimited text"); comma on a tie."""
    return max(",;\t", key=header_line.count)


def read_rows(
    source: IO[bytes], *, default_timezone: str, known_series: set[str]
) -> Iterator[Person | Problem]:
    """Stream valid people and problems from a CSV file (UTF-8, with or without BOM)."""
    text = io.TextIOWrapper(source, encoding="utf-8-sig", errors="replace", newline="")
    try:
        yield from _read_text(text, default_timezone=default_timezone, known_series=known_series)
    finally:
        text.detach()  # leave the caller's file open


def _read_text(
    text: IO[str], *, default_timezone: str, known_series: set[str]
) -> Iterator[Person | Problem]:
    first = text.readline()
    line_end = 1  # the last physical line read
    while first and not first.strip():  # blank lines above the header
        first = text.readline()
        line_end += 1
    if not first.strip():
        raise RosterError("the file is empty")
    if "\ufffd" in first or "\x00" in first:  # UTF-16 ("Unicode text"), a legacy code page
        raise RosterError(
            f"line {line_end} is not UTF-8 text: save the file as CSV UTF-8 and try again"
        )
    delimiter = sniff_delimiter(first)
    header = next(csv.reader([first], delimiter=delimiter))
    columns = _header_map(header, line_end)
    reader = csv.reader(text, delimiter=delimiter)
    header_line = line_end

    make = person_maker(default_timezone=default_timezone, known_series=known_series)
    # email, name, timezone, series in one call; a column the file lacks reads the None put
    # at the end of each row, a cell missing from a short row reads as empty
    indices = [columns.get(name) for name in COLUMNS]
    width = max(i for i in indices if i is not None) + 1
    pick = itemgetter(*(-1 if i is None else i for i in indices))

    while True:
        start = line_end + 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            line_end = start + max(reader.line_num - 1, 0)
            yield Problem(
                start, f"unreadable CSV ({exc}); this row and the rest of the file were not read"
            )
            return
        line_end = header_line + reader.line_num
        whole = "".join(row)  # one string to test: blank row, replacement characters
        if not whole.strip():
            continue
        if "\ufffd" in whole:
            yield Problem(start, "not UTF-8 text (save the file as CSV UTF-8)")
            continue
        if "'" in whole:  # a cell the export neutralised ('=…) loses its apostrophe
            row = [from_spreadsheet(c) for c in row]
        if len(row) < width:
            row += [""] * (width - len(row))
        row.append(None)  # type: ignore[arg-type]  # what an absent column reads
        email, name, zone, series = pick(row)
        try:
            yield make(start, email or "", name, zone, series)
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
    """What `roster.new_subscriber` writes for every imported person (same columns, in bulk)."""
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
    """Check (dry run) or import a CSV in batches; new people are pending unless `confirmed`.

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
    with (
        get_engine(settings.database_url).connect() as connection,
        Session(bind=connection, expire_on_commit=False) as session,
        intake(session) as into,
    ):
        slugs = known_series(session)
        rows = read_rows(source, default_timezone=settings.default_timezone, known_series=slugs)
        for batch in _batches(rows, BATCH_ROWS):
            added = _import_batch(session, into, batch, report, common, settings.secret)
            session.commit()
            if added.subscribers:
                _after_commit(settings, report, added)
            if progress is not None:
                progress(len(batch))
            del batch, added  # not alive while the next batch is read: one batch at a time
    report.invalid.sort(key=lambda p: p.line)
    return report


def _import_batch(
    session: Session,
    into: Intake,
    batch: list[Person | Problem],
    report: ImportReport,
    common: Common,
    secret: str,
) -> Added:
    """Count and (unless a dry run) write one batch; who was added."""
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
        return Added([])
    ids = new_public_ids(len(new))
    added = into.insert(
        [_row(key, p, i) for (key, p), i in zip(new.items(), ids, strict=True)], common
    )
    report.new += len(added)
    report.existing += len(new) - len(added)  # added meanwhile by someone else
    if not added or common.status != ACTIVE:
        return Added(list(added.values()))
    # Everyone taking every series is enrolled in bulk (same rows as enroll); people who chose
    # series one by one.
    everything = [added[key] for key, p in new.items() if key in added and not p.series]
    chose = [added[key] for key, p in new.items() if key in added and p.series]
    due = enrollment.enroll_new_due(session, everything, common.now)
    for sub_id, person in ((added[k], p) for k, p in new.items() if k in added and p.series):
        sub = session.get(Subscriber, sub_id)
        assert sub is not None
        activate(session, sub, person.series, common.now)
    session.expunge_all()
    return Added(list(added.values()), due, chose)


@dataclass
class Added:
    """Who a batch added: all of them, (enrollment id, due) of those enrolled in bulk (all
    Redis needs of them: new people have nothing there yet), those who chose their series."""

    subscribers: list[int]
    due: list[tuple[int, dt.datetime]] = field(default_factory=list)
    chose_series: list[int] = field(default_factory=list)


def _row(key: str, person: Person, public_id: str) -> NewRow:
    return NewRow(
        public_id,
        person.email,
        key,
        person.name,
        person.timezone,
        json.dumps(list(person.series)) if person.series else None,
    )


def _after_commit(settings: Settings, report: ImportReport, added: Added) -> None:
    """Redis follows the new enrollments; pending people get their confirmation email."""
    if report.confirmed:
        RedisQueue(settings).apply(added.due)
        people.sync_subscribers(settings, added.chose_series)
        return
    from newsletter.services import mailing  # the renderer (jinja2): only pending imports mail

    mailed = mailing.send_confirmations(settings, added.subscribers)
    report.confirmations_sent += mailed.sent
    report.confirmations_failed += mailed.failed
    report.halted = report.halted or mailed.halted
