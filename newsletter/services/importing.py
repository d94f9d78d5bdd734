"""CSV import of subscribers: read and check every row (a dry run first), then add in batches."""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from sqlalchemy import select

from newsletter.core.config import Settings
from newsletter.engine import schedule
from newsletter.services import mailing, people
from newsletter.services.roster import (
    Person,
    Problem,
    RosterError,
    activate,
    known_series,
    make_person,
    new_subscriber,
)
from newsletter.store.db import session_scope
from newsletter.store.models import Subscriber, utcnow

BATCH_ROWS = 1000  # rows validated, checked and written together
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

    def cell(row: list[str], name: str) -> str | None:
        index = columns.get(name)
        return row[index] if index is not None and index < len(row) else None

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
        if not row or all(not c.strip() for c in row):
            continue
        if any("\ufffd" in c for c in row):
            yield Problem(start, "not UTF-8 text (save the file as CSV UTF-8)")
            continue
        try:
            yield make_person(
                start,
                cell(row, "email") or "",
                cell(row, "name"),
                cell(row, "timezone"),
                cell(row, "series"),
                default_timezone=default_timezone,
                known_series=known_series,
            )
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


def _batches(items: Iterator[Person | Problem], size: int) -> Iterator[list[Person | Problem]]:
    batch: list[Person | Problem] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def import_csv(
    settings: Settings,
    source: IO[bytes] | Path,
    *,
    dry_run: bool,
    confirmed: bool = False,
    now: dt.datetime | None = None,
    progress: Callable[[int], None] | None = None,
) -> ImportReport:
    """Check (dry run) or import a CSV in batches; new people are pending unless `confirmed`."""
    if isinstance(source, Path):
        with source.open("rb") as handle:
            return import_csv(
                settings, handle, dry_run=dry_run, confirmed=confirmed, now=now, progress=progress
            )
    now = now or utcnow()
    report = ImportReport(dry_run=dry_run, confirmed=confirmed)
    with session_scope(settings.database_url) as session:
        slugs = known_series(session)
    seen: set[bytes] = set()  # 16-byte digests of the addresses met so far in this file
    rows = read_rows(source, default_timezone=settings.default_timezone, known_series=slugs)
    for batch in _batches(rows, BATCH_ROWS):
        persons: list[Person] = []
        for item in batch:
            report.rows += 1
            if isinstance(item, Problem):
                report.invalid.append(item)
                continue
            digest = hashlib.sha256(item.key.encode()).digest()[:16]
            if digest in seen:
                report.duplicates += 1
                continue
            seen.add(digest)
            persons.append(item)
        created: list[int] = []
        with session_scope(settings.database_url) as session:
            keys = [p.key for p in persons]
            existing = set(
                session.scalars(select(Subscriber.email_key).where(Subscriber.email_key.in_(keys)))
            )
            erased = people.suppressed_among(session, settings.secret, [p.email for p in persons])
            fresh: list[tuple[Person, Subscriber]] = []
            for person in persons:
                if person.key in existing:
                    report.existing += 1
                elif person.key in erased:
                    report.invalid.append(
                        Problem(
                            person.line,
                            "this address was erased on request; it can't be imported again",
                        )
                    )
                else:
                    report.new += 1
                    if not dry_run:
                        method = IMPORT_CONSENTED if confirmed else IMPORT
                        sub = new_subscriber(person, confirmed=confirmed, method=method, now=now)
                        session.add(sub)
                        fresh.append((person, sub))
            if fresh:
                session.flush()
                if confirmed:
                    # Everyone taking every series is enrolled in bulk (same rows as enroll);
                    # people who chose series one by one.
                    everything = [sub.id for person, sub in fresh if not person.series]
                    schedule.enroll_new(session, everything, now)
                    for person, sub in fresh:
                        if person.series:
                            activate(session, sub, person.series, now)
                created = [sub.id for _, sub in fresh]
            session.expunge_all()
        if created:
            if confirmed:
                people.sync_subscribers(settings, created)
            else:
                mailed = mailing.send_confirmations(settings, created)
                report.confirmations_sent += mailed.sent
                report.confirmations_failed += mailed.failed
                report.halted = report.halted or mailed.halted
        if progress is not None:
            progress(len(batch))
    report.invalid.sort(key=lambda p: p.line)
    return report
