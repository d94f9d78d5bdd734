"""What readers may see on the web: parts that went out to someone and broadcasts the therapist
published in the archive (the one "published" filter of the archive and its feeds)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import ColumnElement, select
from sqlalchemy.orm import Session

from newsletter.store.models import BROADCAST_KIND, Part, Series


@dataclass(frozen=True)
class Entry:
    """One published part or letter."""

    slug: str
    number: int
    series_title: str
    series_description: str
    broadcast: bool
    title: str
    summary: str
    body_md: str
    published: dt.datetime


def _published() -> tuple[ColumnElement[bool], ...]:
    return (Part.first_sent_at.is_not(None), Series.in_archive.is_(True))


def _entry(series: Series, part: Part) -> Entry:
    assert part.first_sent_at is not None
    return Entry(
        series.slug,
        part.number,
        series.title,
        series.description,
        series.kind == BROADCAST_KIND,
        part.title,
        part.summary,
        part.body_md,
        part.first_sent_at,
    )


def newest(session: Session, limit: int | None = None) -> list[Entry]:
    """Everything published, newest first (the feeds)."""
    query = (
        select(Series, Part)
        .join(Part, Part.series_id == Series.id)
        .where(*_published())
        .order_by(Part.first_sent_at.desc(), Part.id.desc())
    )
    if limit is not None:
        query = query.limit(limit)
    return [_entry(series, part) for series, part in session.execute(query).all()]


def in_queue_order(session: Session) -> list[Entry]:
    """Everything published, series in queue order and parts in order (the archive page)."""
    query = (
        select(Series, Part)
        .join(Part, Part.series_id == Series.id)
        .where(*_published())
        .order_by(Series.order, Series.id, Part.number)
    )
    return [_entry(series, part) for series, part in session.execute(query).all()]


@dataclass(frozen=True)
class Article:
    """One published part with the numbers of its published neighbours."""

    entry: Entry
    previous: int | None
    next: int | None


def article(session: Session, slug: str, number: int) -> Article | None:
    """Part `number` of series `slug` when it is published; None otherwise."""
    row = session.execute(
        select(Series, Part)
        .join(Part, Part.series_id == Series.id)
        .where(Series.slug == slug, Part.number == number, *_published())
    ).first()
    if row is None:
        return None
    series, part = row
    numbers = list(
        session.scalars(
            select(Part.number)
            .where(Part.series_id == series.id, Part.first_sent_at.is_not(None))
            .order_by(Part.number)
        )
    )
    return Article(
        _entry(series, part),
        max((n for n in numbers if n < number), default=None),
        min((n for n in numbers if n > number), default=None),
    )
