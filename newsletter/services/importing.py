"""The import of subscribers: every row read and checked (a dry run first), then added in batches."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
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
from newsletter.services.import_reading import Header, read_rows
from newsletter.services.person_fields import (
    CheckedPerson,
    Problem,
    known_series,
)
from newsletter.store.db import get_engine
from newsletter.store.intake import Common, Intake, NewRow, intake
from newsletter.store.models import ACTIVE, PENDING, Suppression, utcnow

BATCH_ROWS = 5000  # rows validated, checked and written together (one transaction)
ERASED = "email: this address was erased on request; it can't be imported again"
IMPORT_CONSENTED = standing.IMPORT_CONSENTED
IMPORT = standing.IMPORT


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
    source: str = ""  # the tool the file came from (import_sources), or ours
    columns: list[list[str]] = field(default_factory=list)  # [its column, what it became]
    tags: dict[str, int] = field(default_factory=dict)  # a tool's tags: rows carrying each

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
            "source": self.source,
            "columns": [list(pair) for pair in self.columns],
            "tags": dict(self.tags),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ImportReport:
        """The report `as_dict` wrote (a background import's, kept in Redis)."""
        fields = {k: v for k, v in data.items() if k != "invalid"}
        invalid = [Problem(int(p["line"]), str(p["reason"])) for p in data.get("invalid", [])]
        return cls(**fields, invalid=invalid)


def _batches(
    items: Iterator[CheckedPerson | Problem], size: int
) -> Iterator[list[CheckedPerson | Problem]]:
    batch: list[CheckedPerson | Problem] = []
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
    tag_series: Mapping[str, str] | None = None,
) -> ImportReport:
    """Check (dry run) or import a CSV file or a JSON export in batches; new people are pending
    unless `confirmed`, or as the file's standing columns say (services.import_standing). Another
    tool's export is recognised and converted (services.import_sources); `tag_series` maps its
    tags to series (her choice in the dry run).

    Streamed: one batch of rows in memory at a time, whatever the file's length (repeated
    addresses are found in a temp table, store.intake). Each batch is three reads and one
    bulk write, committed on its own (a failure keeps the batches before it)."""
    if isinstance(source, Path):
        with source.open("rb") as handle:
            return import_csv(
                settings,
                handle,
                dry_run=dry_run,
                confirmed=confirmed,
                now=now,
                progress=progress,
                tag_series=tag_series,
            )
    now = now or utcnow()
    report = ImportReport(dry_run=dry_run, confirmed=confirmed)
    common = _common(confirmed, now)

    def header_seen(header: Header) -> None:
        report.ignored_columns = list(header.ignored)
        report.source = header.source
        report.columns = [list(pair) for pair in header.report]
        report.tags = header.tags  # filled as the rows are read

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
            tag_series=tag_series,
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


def _status(person: CheckedPerson, common: Common) -> str:
    return common.status if person.standing is None else person.standing.status


def _count_states(report: ImportReport, persons: Iterable[CheckedPerson], common: Common) -> None:
    for person in persons:
        status = _status(person, common)
        report.states[status] = report.states.get(status, 0) + 1


def _import_batch(
    session: Session,
    into: Intake,
    batch: list[CheckedPerson | Problem],
    report: ImportReport,
    common: Common,
    secret: str,
    every: frozenset[str],
) -> Added:
    """Count and (unless a dry run) write one batch; who was added. `every`: the slugs of the
    series a new reader is enrolled in when they chose none."""
    persons: dict[str, CheckedPerson] = {}  # key -> the first row of each address in the batch
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
    new: dict[str, CheckedPerson] = {}
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
    # Enrolled in bulk (same rows as enroll), a statement group per choice of series: those
    # taking every series, then those who chose the same ones; people who take none (an
    # export's "(none)") are not enrolled.
    takes = [(i, p) for i, p in active if p.standing is None or not p.standing.no_series]
    choices: dict[frozenset[str] | None, list[int]] = {}
    for sub_id, p in takes:
        chosen = frozenset(p.series)
        choices.setdefault(None if not chosen or every <= chosen else chosen, []).append(sub_id)
    due = [
        pair
        for chosen, ids in choices.items()
        for pair in enrollment.enroll_new_due(session, ids, common.now, chosen)
    ]
    session.expunge_all()
    return Added([sub_id for sub_id, _ in written], due, pending)


@dataclass
class Added:
    """Who a batch added: all of them, (enrollment id, due) of those enrolled (all Redis needs
    of them: new people have nothing there yet), those left pending (a confirmation email,
    unless the import was `--confirmed`)."""

    subscribers: list[int]
    due: list[tuple[int, dt.datetime]] = field(default_factory=list)
    pending: list[int] = field(default_factory=list)


def _row(key: str, person: CheckedPerson, public_id: str) -> NewRow:
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
    if report.confirmed or not added.pending:
        return
    from newsletter.services import mailing  # the renderer (jinja2): only pending imports mail

    mailed = mailing.send_confirmations(settings, added.pending)
    report.confirmations_sent += mailed.sent
    report.confirmations_failed += mailed.failed
    report.halted = report.halted or mailed.halted
