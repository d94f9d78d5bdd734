"""The export's read: every reader with the series they take, a page per statement.

A page is one statement: the next `size` readers by id after the last page's (keyset, so a
deep page costs what the first does), each with their series enrollments read by a correlated
aggregate. No IN list of the page's ids, no ORM objects: the database writes the cells as text
(moments as ISO 8601 in UTC, the series as their slugs in queue order), so a row arrives as the
export writes it and Python only touches the series of SQLite's readers (see `_in_order`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NamedTuple

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Integer,
    String,
    and_,
    bindparam,
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


class ExportPage(NamedTuple):
    """A page of readers as the export writes them, a column each, in the export's column
    order (`id` first, for the keyset, and `requested` last). `taken`: the slugs of the series
    a reader takes in their queue's order, space-separated (never a broadcast, never one they
    deselected; "" when they deselected every one), None when they have no series enrollment
    at all (pending, or never enrolled): then `requested` says."""

    id: Sequence[int]
    email: Sequence[str]
    name: Sequence[str | None]
    timezone: Sequence[str]
    taken: Sequence[str | None]
    status: Sequence[str]
    cadence: Sequence[str]
    paused_until: Sequence[str | None]  # the date and the moments: ISO 8601, moments in UTC
    takes_new_series: Sequence[bool | int]  # 1/0 on SQLite
    consent_method: Sequence[str | None]
    consent_at: Sequence[str | None]
    confirmed_at: Sequence[str | None]
    unsubscribed_at: Sequence[str | None]
    created_at: Sequence[str]
    consent_ip: Sequence[str | None]
    consent_form: Sequence[str | None]
    consent_wording: Sequence[str | None]
    requested: Sequence[list[str] | None]


# A queue place as fixed-width digits that sort as text in queue order: the position shifted
# to be positive (any 32-bit value), then the row id, then the slug.
_SHIFT, _WIDTH = 2**31, 30
_PG_SECOND = 'YYYY-MM-DD"T"HH24:MI:SS'


def _moment(column: Any, postgresql: bool) -> ColumnElement[str]:
    """A naive UTC moment as the aware one's isoformat() writes it ("2026-03-02T12:00:00+00:00",
    the microseconds only when there are some), written by the database."""
    text: ColumnElement[Any]
    if postgresql:
        whole = column == func.date_trunc("second", column)
        text = case(
            (whole, func.to_char(column, _PG_SECOND)),
            else_=func.to_char(column, _PG_SECOND + ".US"),
        )
    else:  # SQLAlchemy stores "YYYY-MM-DD HH:MM:SS.ffffff"
        stored = type_coerce(column, String())
        text = func.replace(func.replace(stored, " ", "T"), ".000000", "")
    return (type_coerce(text, String()) + literal("+00:00")).label(column.key)


def _date(column: Any, postgresql: bool) -> ColumnElement[str]:
    """A date as isoformat() writes it (SQLite stores it so)."""
    text = func.to_char(column, "YYYY-MM-DD") if postgresql else column
    return type_coerce(text, String()).label(column.key)


def _taken(postgresql: bool) -> ColumnElement[str]:
    # per reader, the series they take as one text (a correlated aggregate over their rows,
    # ix_enrollments_subscriber_position): the deselected are NULL, which the aggregate skips,
    # and "" when every one is deselected. An aggregate's order is not promised on SQLite
    # 3.40, so there each place carries its queue order and `_sorted_slugs` sorts.
    chosen = case((Enrollment.state != CANCELLED, Series.slug))
    if postgresql:  # PostgreSQL orders inside the aggregate: the slugs alone
        queue_order = aggregate_order_by(literal(" "), Enrollment.position, Enrollment.id)
        joined = func.string_agg(chosen, queue_order)
    else:
        shifted = cast(Enrollment.position, BigInteger) + literal(_SHIFT, BigInteger)
        digits = func.printf("%010d%020d", shifted, Enrollment.id, type_=String)
        joined = func.group_concat(digits + chosen, " ")
    none_taken = case((func.count() > 0, literal("")))
    return (
        select(type_coerce(func.coalesce(joined, none_taken), String()))
        .select_from(Enrollment)
        .join(Series, and_(Series.id == Enrollment.series_id, Series.kind == SERIES_KIND))
        .where(Enrollment.subscriber_id == Subscriber.id)
        .correlate(Subscriber)
        .scalar_subquery()
        .label("taken")
    )


def _as_read(column: Any, stored: Any, postgresql: bool) -> Any:
    """On SQLite, a column as stored (0/1, JSON text): SQLAlchemy's per-row conversion of the
    two cost more than `_pages` reading the few JSON lists it needs."""
    return column if postgresql else type_coerce(column, stored).label(column.key)


def _page_statement(session: Session, size: int) -> Any:
    """The page after the bound `after` id; built once an export (SQLAlchemy's building and
    cache lookup of a statement this size cost 6 ms a page, 0.3 s at 100k readers)."""
    pg = _in_order(session)
    columns = (
        Subscriber.id,
        Subscriber.email,
        Subscriber.name,
        Subscriber.timezone,
        _taken(pg),
        Subscriber.status,
        Subscriber.cadence,
        _date(Subscriber.paused_until, pg),
        _as_read(Subscriber.takes_new_series, Integer(), pg),
        Subscriber.consent_method,
        _moment(Subscriber.consent_at, pg),
        _moment(Subscriber.confirmed_at, pg),
        _moment(Subscriber.unsubscribed_at, pg),
        _moment(Subscriber.created_at, pg),
        Subscriber.consent_ip,
        Subscriber.consent_form,
        Subscriber.consent_wording,
        _as_read(Subscriber.requested_series, String(), pg),
    )
    after = bindparam("after", type_=Integer())
    return select(*columns).where(Subscriber.id > after).order_by(Subscriber.id).limit(size)


def _in_order(session: Session) -> bool:
    """Whether the database orders an aggregate's input (PostgreSQL's ORDER BY inside it)."""
    return session.get_bind().dialect.name == "postgresql"


def _sorted_slugs(places: str | None) -> str | None:
    """SQLite's places ("<digits><slug> …", any order) as the slugs in queue order."""
    if not places:  # None or "": nothing to order
        return places
    if " " not in places:
        return places[_WIDTH:]
    return " ".join([place[_WIDTH:] for place in sorted(places.split(" "))])


def reader_pages(session: Session, size: int | None = None) -> Iterator[ExportPage]:
    """Every reader in id order, `size` (default PAGE_SIZE) readers, one statement, a page.
    On PostgreSQL the next page's statement runs (in a thread) while the caller writes this
    one: its 0.5 s of waiting at 100k readers overlaps the writing instead of adding to it.
    Never on SQLite: there the reading is this process's own CPU, and a reading thread would
    take the GIL back row by row from the writing one."""
    pages = _pages(session, size or PAGE_SIZE)
    if not _in_order(session):
        yield from iter(pages, None)
        return
    with ThreadPoolExecutor(1, thread_name_prefix="export-read") as reader:
        ahead = reader.submit(pages)
        while (page := ahead.result()) is not None:
            ahead = reader.submit(pages)  # one statement ahead, never more
            yield page


def _pages(session: Session, size: int) -> Callable[[], ExportPage | None]:
    """A function that reads the next page each call, None after the last."""
    statement = _page_statement(session, size)
    in_order = _in_order(session)
    after: int | None = 0

    def next_page() -> ExportPage | None:
        nonlocal after
        if after is None:
            return None
        rows = session.connection().execute(statement, {"after": after}).all()
        after = rows[-1][0] if len(rows) == size else None  # a short page is the last
        if not rows:
            return None
        page = ExportPage(*zip(*rows, strict=True))
        if not in_order:
            taken = list(map(_sorted_slugs, page.taken))
            stored: Sequence[Any] = page.requested  # JSON text on SQLite (_as_read)
            requested = [None if r is None else json.loads(r) for r in stored]
            page = page._replace(taken=taken, requested=requested)
        return page

    return next_page
