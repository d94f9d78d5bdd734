"""The subscriber roster for the admin: CSV import (dry run first), export, access export, erase, search."""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import hashlib
import io
import json
import re
import secrets
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.orm import Session

from newsletter.core.config import Settings
from newsletter.store.db import session_scope
from newsletter.store.models import (
    ACTIVE,
    CADENCES,
    ENROLLED_ACTIVE,
    PENDING,
    SUBSCRIBER_STATUSES,
    Delivery,
    Enrollment,
    Part,
    ProviderEvent,
    Series,
    Subscriber,
    Suppression,
    utcnow,
)

BATCH_ROWS = 1000  # rows validated, checked and written together
EXPORT_BATCH = 500
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
_SERIES_SPLIT = re.compile(r"[\s|,;]+")
IMPORT_CONSENTED = "import-consented"
IMPORT = "import"
ADMIN = "admin"
EXPORT_FIELDS = (
    "email",
    "name",
    "timezone",
    "series",
    "status",
    "cadence",
    "paused_until",
    "takes_new_series",
    "consent_method",
    "consent_at",
    "confirmed_at",
    "unsubscribed_at",
    "created_at",
)


class RosterError(Exception):
    """The whole file or request can't be used; the message says why and fits on one line."""


def email_hash(email: str) -> str:
    """The suppression key: SHA-256 of the lower-cased address."""
    return hashlib.sha256(email.strip().lower().encode("utf-8")).hexdigest()


# --- validation ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Person:
    """One valid row (or one person added by hand)."""

    line: int
    email: str
    name: str | None
    timezone: str
    series: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return self.email.lower()


@dataclass(frozen=True)
class Problem:
    line: int
    reason: str


def check_email(raw: str) -> str:
    """The address, stripped; ValueError with a readable reason otherwise."""
    value = raw.strip()
    if not value:
        raise ValueError("no email address")
    if _CONTROL.search(value):
        raise ValueError("not a valid email address (control characters)")
    if len(value) > 254:
        raise ValueError("email address is too long")
    try:
        validate_email(value, check_deliverability=False)
    except EmailNotValidError as exc:
        raise ValueError(f"not a valid email address ({exc})") from None
    return value


def check_zone(raw: str | None, default: str) -> str:
    value = (raw or "").strip()
    if not value:
        return default
    if _CONTROL.search(value) or len(value) > 64:
        raise ValueError("unknown time zone (use a name like Europe/London)")
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone {value[:60]!r} (use a name like Europe/London)"
        ) from None
    return value


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def check_name(raw: str | None) -> str | None:
    value = " ".join((raw or "").split())
    if _CONTROL.search(value):
        raise ValueError("name contains control characters")
    if len(value) > 100:
        raise ValueError("name is longer than 100 characters")
    return value or None


def check_series(raw: str | None, known: set[str]) -> tuple[str, ...]:
    slugs = tuple(s for s in _SERIES_SPLIT.split((raw or "").strip()) if s)
    unknown = [s for s in slugs if s not in known]
    if unknown:
        raise ValueError(f"unknown series {', '.join(sorted(set(unknown)))[:120]}")
    return tuple(dict.fromkeys(slugs))


def make_person(
    line: int,
    email: str,
    name: str | None,
    timezone: str | None,
    series: str | Iterable[str] | None,
    *,
    default_timezone: str,
    known_series: set[str],
) -> Person:
    """Validate one person's fields; ValueError with the first problem."""
    series_text = series if isinstance(series, str) or series is None else " ".join(series)
    return Person(
        line=line,
        email=check_email(email),
        name=check_name(name),
        timezone=check_zone(timezone, default_timezone),
        series=check_series(series_text, known_series),
    )


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
        }


def known_series(session: Session) -> set[str]:
    return set(session.scalars(select(Series.slug)))


def new_public_id() -> str:
    return secrets.token_urlsafe(18)


def _batches(items: Iterator[Person | Problem], size: int) -> Iterator[list[Person | Problem]]:
    batch: list[Person | Problem] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _new_subscriber(
    person: Person, *, confirmed: bool, method: str, now: dt.datetime
) -> Subscriber:
    return Subscriber(
        public_id=new_public_id(),
        email=person.email,
        email_key=person.key,
        name=person.name,
        timezone=person.timezone,
        status=ACTIVE if confirmed else PENDING,
        requested_series=list(person.series) or None,
        consent_method=method,
        consent_at=now if confirmed else None,
        consent_form=method if confirmed else None,
        confirmed_at=now if confirmed else None,
        created_at=now,
        updated_at=now,
    )


def activate(
    settings: Settings,
    session: Session,
    subscriber: Subscriber,
    series: Iterable[str],
    now: dt.datetime,
) -> None:
    """Enroll a confirmed subscriber (ENGINE's schedule.enroll) and put them in the Redis queue."""
    from newsletter.engine import schedule

    slugs = list(series) or None
    schedule.enroll(session, subscriber, now, series_slugs=slugs)
    session.flush()


def sync_queue(settings: Settings, subscriber_ids: Iterable[int]) -> None:
    """Make Redis reflect these subscribers' enrollments (the database is the truth)."""
    ids = list(subscriber_ids)
    if not ids:
        return
    with session_scope(settings.database_url) as session:
        enrollment_ids: list[int] = []
        for start in range(0, len(ids), EXPORT_BATCH):
            enrollment_ids += session.scalars(
                select(Enrollment.id).where(
                    Enrollment.subscriber_id.in_(ids[start : start + EXPORT_BATCH])
                )
            )
    sync_enrollments(settings, enrollment_ids)


def send_confirmations(settings: Settings, subscriber_ids: list[int]) -> tuple[int, int]:
    """Send the double opt-in email to each pending subscriber, rendered once; (sent, failed)."""
    if not subscriber_ids:
        return 0, 0
    from newsletter.mail import render
    from newsletter.mail.backends import get_backend
    from newsletter.mail.message import Accepted, Recipient
    from newsletter.services.subscribers import links

    message = render.Renderer(settings).confirmation()
    backend = get_backend(settings)
    sent = failed = 0
    with session_scope(settings.database_url) as session:
        for start in range(0, len(subscriber_ids), settings.batch_size):
            chunk = subscriber_ids[start : start + settings.batch_size]
            recipients = []
            for sub in session.scalars(select(Subscriber).where(Subscriber.id.in_(chunk))):
                if sub.status != PENDING:
                    continue
                urls = links(settings, sub)
                recipients.append(
                    Recipient(
                        delivery_id=f"confirmation-{secrets.token_hex(8)}",
                        email=sub.email,
                        name=sub.name,
                        unsubscribe_url=urls["unsubscribe"],
                        values=render.personal_values(
                            name=sub.name,
                            unsubscribe_url=urls["unsubscribe"],
                            preferences_url=urls["preferences"],
                            confirm_url=urls["confirm"],
                        ),
                    )
                )
            session.expunge_all()
            if not recipients:
                continue
            outcomes = backend.send(message, recipients)
            ok = sum(1 for o in outcomes if isinstance(o, Accepted))
            sent += ok
            failed += len(recipients) - ok
    return sent, failed


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
        people: list[Person] = []
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
            people.append(item)
        created: list[int] = []
        with session_scope(settings.database_url) as session:
            keys = [p.key for p in people]
            existing = set(
                session.scalars(select(Subscriber.email_key).where(Subscriber.email_key.in_(keys)))
            )
            hashes = {email_hash(p.email): p for p in people}
            erased = set(
                session.scalars(
                    select(Suppression.email_hash).where(Suppression.email_hash.in_(list(hashes)))
                )
            )
            fresh: list[tuple[Person, Subscriber]] = []
            for person in people:
                if person.key in existing:
                    report.existing += 1
                elif email_hash(person.email) in erased:
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
                        sub = _new_subscriber(person, confirmed=confirmed, method=method, now=now)
                        session.add(sub)
                        fresh.append((person, sub))
            if fresh:
                session.flush()
                if confirmed:
                    from newsletter.engine import schedule

                    # Everyone taking every series is enrolled in bulk (same rows as enroll);
                    # people who chose series one by one.
                    everything = [sub.id for person, sub in fresh if not person.series]
                    schedule.enroll_new(session, everything, now)
                    for person, sub in fresh:
                        if person.series:
                            activate(settings, session, sub, person.series, now)
                created = [sub.id for _, sub in fresh]
            session.expunge_all()
        if created:
            if confirmed:
                sync_queue(settings, created)
            else:
                sent, failed = send_confirmations(settings, created)
                report.confirmations_sent += sent
                report.confirmations_failed += failed
        if progress is not None:
            progress(len(batch))
    report.invalid.sort(key=lambda p: p.line)
    return report


def add_subscriber(
    settings: Settings,
    *,
    email: str,
    name: str | None = None,
    timezone: str | None = None,
    series: Iterable[str] = (),
    confirmed: bool = False,
    method: str = ADMIN,
    now: dt.datetime | None = None,
) -> int:
    """Add one person by hand: pending + confirmation email, or (consent given elsewhere) active."""
    now = now or utcnow()
    with session_scope(settings.database_url) as session:
        try:
            person = make_person(
                0,
                email,
                name,
                timezone,
                list(series),
                default_timezone=settings.default_timezone,
                known_series=known_series(session),
            )
        except ValueError as exc:
            raise RosterError(str(exc)) from None
        if session.scalar(select(Subscriber.id).where(Subscriber.email_key == person.key)):
            raise RosterError("this address is already on the list")
        if session.scalar(
            select(Suppression.id).where(Suppression.email_hash == email_hash(person.email))
        ):
            raise RosterError("this address was erased on request; it can't be added again")
        sub = _new_subscriber(
            person,
            confirmed=confirmed,
            method=f"{method}-consented" if confirmed else method,
            now=now,
        )
        session.add(sub)
        session.flush()
        if confirmed:
            activate(settings, session, sub, person.series, now)
        sub_id = sub.id
    if confirmed:
        sync_queue(settings, [sub_id])
    else:
        send_confirmations(settings, [sub_id])
    return sub_id


# --- finding people ------------------------------------------------------------------------


def find(session: Session, email: str) -> Subscriber | None:
    return session.scalar(select(Subscriber).where(Subscriber.email_key == email.strip().lower()))


def search(
    session: Session,
    query: str = "",
    *,
    status: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[Subscriber], int]:
    """Subscribers whose address or name contains `query` (any case); (page, total)."""
    stmt = select(Subscriber)
    q = _CONTROL.sub("", query).strip().lower()  # PostgreSQL refuses NUL in text
    if q:
        stmt = stmt.where(
            or_(
                Subscriber.email_key.contains(q, autoescape=True),
                func.lower(Subscriber.name).contains(q, autoescape=True),
            )
        )
    if status:
        if status not in SUBSCRIBER_STATUSES:
            raise RosterError(f"unknown status {status!r}")
        stmt = stmt.where(Subscriber.status == status)
    total = session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    page = list(
        session.scalars(
            stmt.order_by(Subscriber.created_at.desc(), Subscriber.id.desc())
            .limit(limit)
            .offset(offset)
        )
    )
    return page, total


# --- export --------------------------------------------------------------------------------


def _iso(value: dt.datetime | dt.date | None) -> str | None:
    return None if value is None else value.isoformat()


def _export_rows(session: Session) -> Iterator[dict[str, Any]]:
    last_id = 0
    while True:
        subs = list(
            session.scalars(
                select(Subscriber)
                .where(Subscriber.id > last_id)
                .order_by(Subscriber.id)
                .limit(EXPORT_BATCH)
            )
        )
        if not subs:
            return
        ids = [s.id for s in subs]
        series_of: dict[int, list[str]] = {}
        for sub_id, slug in session.execute(
            select(Enrollment.subscriber_id, Series.slug)
            .join(Series, Series.id == Enrollment.series_id)
            .where(Enrollment.subscriber_id.in_(ids))
            .order_by(Enrollment.subscriber_id, Enrollment.position)
        ):
            series_of.setdefault(sub_id, []).append(slug)
        for s in subs:
            yield {
                "email": s.email,
                "name": s.name,
                "timezone": s.timezone,
                "series": " ".join(series_of.get(s.id) or s.requested_series or []),
                "status": s.status,
                "cadence": s.cadence,
                "paused_until": _iso(s.paused_until),
                "takes_new_series": s.takes_new_series,
                "consent_method": s.consent_method,
                "consent_at": _iso(s.consent_at),
                "confirmed_at": _iso(s.confirmed_at),
                "unsubscribed_at": _iso(s.unsubscribed_at),
                "created_at": _iso(s.created_at),
            }
        last_id = subs[-1].id
        session.expunge_all()


def count(session: Session) -> int:
    return session.scalar(select(func.count(Subscriber.id))) or 0


def export_csv(settings: Settings) -> Iterator[str]:
    """The whole list as CSV text chunks (UTF-8 BOM first so spreadsheets read accents)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=EXPORT_FIELDS, lineterminator="\r\n")
    yield codecs.BOM_UTF8.decode("utf-8")
    writer.writeheader()
    with session_scope(settings.database_url) as session:
        for n, row in enumerate(_export_rows(session), 1):
            row["takes_new_series"] = "yes" if row["takes_new_series"] else "no"
            writer.writerow({k: "" if v is None else v for k, v in row.items()})
            if n % 200 == 0:
                yield buffer.getvalue()
                buffer.seek(0)
                buffer.truncate()
    yield buffer.getvalue()


def export_json(settings: Settings) -> Iterator[str]:
    """The whole list as one JSON array, streamed a row at a time."""
    yield "["
    first = True
    with session_scope(settings.database_url) as session:
        for row in _export_rows(session):
            yield ("\n" if first else ",\n") + json.dumps(row, ensure_ascii=False)
            first = False
    yield "\n]\n"


def subscriber_record(session: Session, subscriber: Subscriber) -> dict[str, Any]:
    """Everything held about one person (GDPR access request)."""
    sub = subscriber
    enrollments = [
        {
            "series": slug,
            "title": title,
            "position": e.position,
            "state": e.state,
            "next_part": e.next_part,
            "next_due_at": _iso(e.next_due_at),
            "not_before": _iso(e.not_before),
        }
        for e, slug, title in session.execute(
            select(Enrollment, Series.slug, Series.title)
            .join(Series, Series.id == Enrollment.series_id)
            .where(Enrollment.subscriber_id == sub.id)
            .order_by(Enrollment.position)
        )
    ]
    deliveries = [
        {
            "id": d.id,
            "series": slug,
            "part": d.part_number,
            "status": d.status,
            "scheduled_for": _iso(d.scheduled_for),
            "sent_at": _iso(d.sent_at),
            "delivered_at": _iso(d.delivered_at),
            "attempts": d.attempts,
            "last_error": d.last_error,
        }
        for d, slug in session.execute(
            select(Delivery, Series.slug)
            .join(Series, Series.id == Delivery.series_id)
            .where(Delivery.subscriber_id == sub.id)
            .order_by(Delivery.scheduled_for, Delivery.id)
        )
    ]
    events = [
        {
            "provider": ev.provider,
            "type": ev.event_type,
            "occurred_at": _iso(ev.occurred_at),
            "delivery_id": ev.delivery_id,
            "detail": ev.detail,
        }
        for ev in session.scalars(
            select(ProviderEvent)
            .where(ProviderEvent.subscriber_id == sub.id)
            .order_by(ProviderEvent.occurred_at)
        )
    ]
    return {
        "subscriber": {
            "email": sub.email,
            "name": sub.name,
            "timezone": sub.timezone,
            "status": sub.status,
            "cadence": sub.cadence,
            "paused_until": _iso(sub.paused_until),
            "takes_new_series": sub.takes_new_series,
            "created_at": _iso(sub.created_at),
            "confirmed_at": _iso(sub.confirmed_at),
            "unsubscribed_at": _iso(sub.unsubscribed_at),
        },
        "consent": {
            "method": sub.consent_method,
            "at": _iso(sub.consent_at),
            "ip": sub.consent_ip,
            "form": sub.consent_form,
            "wording": sub.consent_wording,
        },
        "enrollments": enrollments,
        "deliveries": deliveries,
        "events": events,
    }


# --- unsubscribe and erase -----------------------------------------------------------------


def unsubscribe(
    settings: Settings, session: Session, subscriber: Subscriber, now: dt.datetime | None = None
) -> None:
    """Stop everything for this person (WEB's subscribers.unsubscribe), and drop their queue."""
    from newsletter.services import subscribers

    subscribers.unsubscribe(session, subscriber, now or utcnow())
    session.flush()


def erase(settings: Settings, session: Session, subscriber: Subscriber) -> list[int]:
    """GDPR erasure: the row goes, the ledger keeps no personal data, a hashed suppression stays.

    Returns the enrollment ids the caller must drop from the Redis queue after committing.
    """
    sub_id = subscriber.id
    digest = email_hash(subscriber.email_key)
    enrollment_ids = list(
        session.scalars(select(Enrollment.id).where(Enrollment.subscriber_id == sub_id))
    )
    # Provider texts can quote the address; the ledger keeps only series, part and status.
    session.execute(
        update(Delivery)
        .where(Delivery.subscriber_id == sub_id)
        .values(subscriber_id=None, last_error=None, provider_message_id=None)
    )
    session.execute(
        update(ProviderEvent)
        .where(ProviderEvent.subscriber_id == sub_id)
        .values(subscriber_id=None, detail=None)
    )
    session.execute(delete(Enrollment).where(Enrollment.subscriber_id == sub_id))
    session.expunge(subscriber)
    session.execute(delete(Subscriber).where(Subscriber.id == sub_id))
    if session.scalar(select(Suppression.id).where(Suppression.email_hash == digest)) is None:
        session.add(Suppression(email_hash=digest, reason="erased"))
    session.flush()
    return enrollment_ids


def drop_from_queue(settings: Settings, enrollment_ids: Iterable[int]) -> None:
    ids = list(enrollment_ids)
    if not ids:
        return
    from newsletter.queue.dueset import RedisQueue

    RedisQueue(settings).apply((i, None) for i in ids)


def erase_email(settings: Settings, email: str) -> bool:
    """Erase by address (CLI); False when nobody has it (a suppression entry is still added)."""
    with session_scope(settings.database_url) as session:
        sub = find(session, email)
        if sub is None:
            digest = email_hash(email)
            if (
                session.scalar(select(Suppression.id).where(Suppression.email_hash == digest))
                is None
            ):
                session.add(Suppression(email_hash=digest, reason="erased"))
            return False
        ids = erase(settings, session, sub)
    drop_from_queue(settings, ids)
    return True


def part_title(session: Session, series_id: int, number: int) -> str | None:
    return session.scalar(
        select(Part.title).where(Part.series_id == series_id, Part.number == number)
    )


# --- preferences and series queueing (through ENGINE's schedule) ----------------------------


def update_subscriber(
    settings: Settings,
    session: Session,
    subscriber: Subscriber,
    changes: dict[str, Any],
    now: dt.datetime | None = None,
) -> None:
    """Apply admin edits (name, zone, cadence, pause, new series) and reschedule by the same
    rule as the reader's own preference save (schedule.reschedule: a due part stays due)."""
    from newsletter.engine import schedule

    if "name" in changes:
        try:
            subscriber.name = check_name(changes["name"])
        except ValueError as exc:
            raise RosterError(str(exc)) from None
    if changes.get("timezone"):
        try:
            subscriber.timezone = check_zone(changes["timezone"], settings.default_timezone)
        except ValueError as exc:
            raise RosterError(str(exc)) from None
    if changes.get("cadence"):
        if changes["cadence"] not in CADENCES:
            raise RosterError("cadence must be weekly or fortnightly")
        subscriber.cadence = changes["cadence"]
    if "paused_until" in changes:
        subscriber.paused_until = changes["paused_until"]
    if changes.get("takes_new_series") is not None:
        subscriber.takes_new_series = bool(changes["takes_new_series"])
    session.flush()
    schedule.reschedule(session, subscriber, now or dt.datetime.now(dt.UTC))
    session.flush()


MAX_START_DAYS = 3653  # a queue date more than ten years out is a typo (and 9999-12-31 overflows)


def check_start(start: dt.date | None, today: dt.date) -> None:
    """RosterError unless `start` is at most ten years from today (past dates mean "now")."""
    if start is not None and (start - today).days > MAX_START_DAYS:
        raise RosterError(
            f"the start date {start.isoformat()} is more than ten years away; "
            "use a date like 2026-03-09"
        )


def queue_series(
    settings: Settings, slug: str, start: dt.date | None, now: dt.datetime
) -> tuple[int | None, dt.date | None]:
    """Queue a series for everyone (ENGINE's schedule.queue_series); (count, first date).

    count is None when there is no such series; RosterError for a start date too far away.
    """
    from newsletter.engine import schedule

    check_start(start, now.date())

    with session_scope(settings.database_url) as session:
        if session.scalar(select(Series.id).where(Series.slug == slug)) is None:
            return None, None
        report = schedule.queue_series(session, slug, start, now)
    sync_enrollments(settings, report.enrollment_ids)
    return report.count, report.first_date


def sync_enrollments(settings: Settings, enrollment_ids: Iterable[int]) -> None:
    """Mirror these enrollments into Redis (ENGINE's queue): due ones scheduled, others removed."""
    ids = sorted(set(enrollment_ids))
    if not ids:
        return
    from newsletter.queue.dueset import RedisQueue

    with session_scope(settings.database_url) as session:
        RedisQueue(settings).sync_enrollments(session, ids)


def sync_series_queue(settings: Settings, series_id: int) -> None:
    """Mirror every enrollment of one series into Redis (after a pause or resume)."""
    with session_scope(settings.database_url) as session:
        ids = list(session.scalars(select(Enrollment.id).where(Enrollment.series_id == series_id)))
    sync_enrollments(settings, ids)


def resume_series(settings: Settings, series_id: int, now: dt.datetime) -> None:
    """After a series pause: recompute each reader's next slot (no catch-up burst), then Redis."""
    from newsletter.engine import schedule

    with session_scope(settings.database_url) as session:
        ids = list(
            session.scalars(
                select(Enrollment.subscriber_id).where(
                    Enrollment.series_id == series_id, Enrollment.state == ENROLLED_ACTIVE
                )
            )
        )
        for start in range(0, len(ids), EXPORT_BATCH):
            for sub in session.scalars(
                select(Subscriber).where(
                    Subscriber.id.in_(ids[start : start + EXPORT_BATCH]),
                    Subscriber.status == ACTIVE,
                )
            ):
                schedule.reschedule(session, sub, now, resuming=True)
            session.flush()
    sync_series_queue(settings, series_id)
