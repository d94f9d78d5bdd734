"""The export's read: every reader with the series they take, a page per statement.

A page is one statement: the next `size` readers by id after the last page's (keyset, so a
deep page costs what the first does), each with their series enrollments read by a correlated
aggregate. No IN list of the page's ids, no ORM objects: plain rows, turned into
`ExportReader` values.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

from sqlalchemy import (
    BigInteger,
    DateTime,
    String,
    and_,
    case,
    cast,
    func,
    literal,
    select,
    type_coerce,
)
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.orm import Session

from newsletter.store.models import CANCELLED, SERIES_KIND, Enrollment, Series, Subscriber

PAGE_SIZE = 2000  # readers a statement


def _utc_text(column: Any) -> Any:
    """A UTC moment column read as the stored naive value (no aware datetime built a row:
    `_iso` writes the offset), labelled as the column."""
    return type_coerce(column, DateTime()).label(column.key)


_COLUMNS = (
    Subscriber.id,
    Subscriber.email,
    Subscriber.name,
    Subscriber.timezone,
    Subscriber.status,
    Subscriber.cadence,
    Subscriber.paused_until,
    Subscriber.takes_new_series,
    Subscriber.consent_method,
    _utc_text(Subscriber.consent_at),
    _utc_text(Subscriber.confirmed_at),
    _utc_text(Subscriber.unsubscribed_at),
    _utc_text(Subscriber.created_at),
    Subscriber.consent_ip,
    Subscriber.consent_form,
    Subscriber.consent_wording,
    Subscriber.requested_series,
)


class ExportReader(NamedTuple):
    """One reader as the export writes them. `enrolled`: the slugs of the series they take
    in their queue's order (never a broadcast, never one they deselected), None when they have
    no series enrollment at all (pending, or never enrolled): then `requested` says."""

    id: int
    email: str
    name: str | None
    timezone: str
    status: str
    cadence: str
    paused_until: str | None  # the date and the moments below: ISO 8601 text, moments in UTC
    takes_new_series: bool
    consent_method: str | None
    consent_at: str | None
    confirmed_at: str | None
    unsubscribed_at: str | None
    created_at: str
    consent_ip: str | None
    consent_form: str | None
    consent_wording: str | None
    requested: list[str] | None
    enrolled: list[str] | None


# A queue place as fixed-width digits that sort as text in queue order: the position shifted
# to be positive (any 32-bit value), then the row id, then the slug.
_SHIFT, _WIDTH = 2**31, 30


def _page_statement(session: Session, after: int, size: int) -> Any:
    # per reader, their series enrollments as one text of places (the slug empty when
    # deselected): a correlated aggregate over their rows (ix_enrollments_subscriber_position),
    # half the cost of a window over the page's enrollments. An aggregate's order is not
    # promised on SQLite 3.40, so each place carries its queue order and `_slugs` sorts.
    slug = func.coalesce(case((Enrollment.state != CANCELLED, Series.slug)), literal(""))
    if _in_order(session):  # PostgreSQL orders inside the aggregate: the slugs alone
        queue_order = aggregate_order_by(literal(" "), Enrollment.position, Enrollment.id)
        joined = func.string_agg(slug, queue_order)
    else:
        shifted = cast(Enrollment.position, BigInteger) + literal(_SHIFT, BigInteger)
        digits = func.printf("%010d%020d", shifted, Enrollment.id, type_=String)
        joined = func.group_concat(digits + slug, " ")
    taken = (
        select(joined)
        .select_from(Enrollment)
        .join(Series, and_(Series.id == Enrollment.series_id, Series.kind == SERIES_KIND))
        .where(Enrollment.subscriber_id == Subscriber.id)
        .correlate(Subscriber)
        .scalar_subquery()
        .label("places")
    )
    return select(*_COLUMNS, taken).where(Subscriber.id > after).order_by(Subscriber.id).limit(size)


def _in_order(session: Session) -> bool:
    """Whether the database orders an aggregate's input (PostgreSQL's ORDER BY inside it)."""
    return session.get_bind().dialect.name == "postgresql"


def _ordered_slugs(places: str | None) -> list[str] | None:
    """The slugs of an aggregate already in queue order, the deselected (empty) left out."""
    return None if places is None else [slug for slug in places.split(" ") if slug]


def _slugs(places: str | None) -> list[str] | None:
    """The slugs of `_page_statement`'s places in queue order (position, then id), the
    deselected left out; None when the reader has no series enrollment at all."""
    if places is None:
        return None
    items = places.split(" ")
    if len(items) > 1:
        items.sort()
    return [item[_WIDTH:] for item in items if len(item) > _WIDTH]


def _iso(moment: dt.datetime | None) -> str | None:
    """A naive UTC moment as the aware one's isoformat() writes it."""
    return None if moment is None else moment.isoformat() + "+00:00"


def _reader(row: Any, slugs: Callable[[str | None], list[str] | None]) -> ExportReader:
    (id_, email, name, zone, status, cadence, paused, takes_new, method, consent_at, confirmed_at,
     unsubscribed_at, created_at, ip, form, wording, requested, places) = row  # fmt: skip
    return ExportReader(
        id_, email, name, zone, status, cadence,
        None if paused is None else paused.isoformat(),
        takes_new, method, _iso(consent_at), _iso(confirmed_at), _iso(unsubscribed_at),
        created_at.isoformat() + "+00:00", ip, form, wording, requested,
        slugs(places),
    )  # fmt: skip


def reader_pages(session: Session, size: int | None = None) -> Iterator[list[ExportReader]]:
    """Every reader in id order, `size` (default PAGE_SIZE) readers, one statement, a page."""
    size = size or PAGE_SIZE
    slugs = _ordered_slugs if _in_order(session) else _slugs
    after = 0
    while True:
        rows = session.connection().execute(_page_statement(session, after, size)).all()
        page = [_reader(row, slugs) for row in rows]
        if not page:
            return
        yield page
        if len(page) < size:
            return
        after = page[-1].id
