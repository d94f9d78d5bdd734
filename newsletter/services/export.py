"""Export of the whole list (CSV or JSON, streamed) and of everything held about one person."""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import io
import json
from collections.abc import Iterator
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from newsletter.core.config import Settings
from newsletter.services.people import Someone, row_of
from newsletter.store import export_rows
from newsletter.store.db import session_scope
from newsletter.store.export_rows import ExportReader
from newsletter.store.models import (
    Delivery,
    Enrollment,
    ProviderEvent,
    Series,
)

EXPORT_FIELDS = (
    "email",
    "name",
    "timezone",
    "series",
    # a reader's standing: what `subscribers import` reads back (services/import_standing)
    "status",
    "cadence",
    "paused_until",
    "takes_new_series",
    "consent_method",
    "consent_at",
    "confirmed_at",
    "unsubscribed_at",
    "created_at",
    "consent_ip",
    "consent_form",
    "consent_wording",
)
# A reader who takes no series at all (empty means every series, as on import).
NO_SERIES = "(none)"


# OWASP CSV injection: a spreadsheet reads a cell that starts with one of these as a formula
# (=HYPERLINK(...) typed into the public signup form), so such a cell gets a leading apostrophe.
FORMULA_LEADERS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(value: object) -> str:
    """One CSV cell as text a spreadsheet shows as text, never runs as a formula."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_LEADERS) else text


def from_spreadsheet(cell: str) -> str:
    """The import's inverse of `spreadsheet_safe`: an apostrophe before a formula leader goes,
    so an export imports back as it was (any other leading apostrophe stays)."""
    return cell[1:] if cell.startswith("'") and cell[1:].startswith(FORMULA_LEADERS) else cell


def _iso(value: dt.datetime | dt.date | None) -> str | None:
    return None if value is None else value.isoformat()


def _series_cell(enrolled: list[str] | None, requested: list[str] | None) -> str:
    """The series column: those enrolled in (not deselected), or, with no enrollment yet
    (pending, or never enrolled), those asked for; empty for every series, NO_SERIES for none."""
    chosen = requested if enrolled is None else enrolled
    if chosen is None:
        return ""
    return " ".join(chosen) if chosen else NO_SERIES


def _cells(r: ExportReader) -> tuple[Any, ...]:
    """One reader's cells in EXPORT_FIELDS' order (takes_new_series as a bool)."""
    return (
        r.email,
        r.name,
        r.timezone,
        _series_cell(r.enrolled, r.requested),
        r.status,
        r.cadence,
        r.paused_until,
        r.takes_new_series,
        r.consent_method,
        r.consent_at,
        r.confirmed_at,
        r.unsubscribed_at,
        r.created_at,
        r.consent_ip,
        r.consent_form,
        r.consent_wording,
    )


_JSON = json.JSONEncoder(ensure_ascii=False)  # json.dumps builds one a call for this option
_TAKES_NEW = EXPORT_FIELDS.index("takes_new_series")
# The cells whose text came from someone (a form, a file, the API); the others are dates,
# yes/no or the app's own words (status, cadence), none of which starts with a formula leader.
_FREE_TEXT = tuple(
    EXPORT_FIELDS.index(f)
    for f in ("email", "name", "timezone", "series", "consent_method", "consent_ip",
              "consent_form", "consent_wording")
)  # fmt: skip


def _csv_cells(r: ExportReader) -> tuple[Any, ...]:
    cells = _cells(r)
    return (*cells[:_TAKES_NEW], "yes" if r.takes_new_series else "no", *cells[_TAKES_NEW + 1 :])


def _guarded(cells: tuple[Any, ...]) -> list[Any]:
    out = list(cells)
    for i in _FREE_TEXT:
        out[i] = spreadsheet_safe(out[i])
    return out


def export_csv(settings: Settings) -> Iterator[str]:
    """The whole list as CSV text chunks (UTF-8 BOM first so spreadsheets read accents), a
    chunk per page of readers (one statement each: store.export_rows)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    yield codecs.BOM_UTF8.decode("utf-8")
    writer.writerow(EXPORT_FIELDS)
    yield buffer.getvalue()
    with session_scope(settings.database_url) as session:
        for page in export_rows.reader_pages(session):
            buffer.seek(0)
            buffer.truncate()
            writer.writerows(_guarded(_csv_cells(r)) for r in page)
            yield buffer.getvalue()


def export_json(settings: Settings) -> Iterator[str]:
    """The whole list as one JSON array, streamed a page of readers a chunk (a chunk a row
    cost more in the server than the rows themselves: 20 s for 100k readers)."""
    yield "["
    sep = "\n"
    with session_scope(settings.database_url) as session:
        for page in export_rows.reader_pages(session):
            rows = (_JSON.encode(dict(zip(EXPORT_FIELDS, _cells(r), strict=True))) for r in page)
            yield sep + ",\n".join(rows)
            sep = ",\n"
    yield "\n]\n"


def subscriber_record(session: Session, someone: Someone) -> dict[str, Any]:
    """Everything held about one person (GDPR access request)."""
    sub = row_of(session, someone)
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
