"""What the archive publishes: parts that went out to someone, of series shown in the archive."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from newsletter.store.models import BROADCAST_KIND, Part, Series


@dataclass(frozen=True)
class Published:
    """One published part (a broadcast is a one-part series of kind broadcast)."""

    slug: str
    number: int
    series_title: str
    series_description: str
    broadcast: bool
    title: str
    summary: str
    body_md: str
    published: dt.datetime  # when it first went out to anyone
    corrected: dt.datetime | None = None  # when its text was corrected after that


def _published() -> Select[Series, Part]:
    """The one "published" filter: every archive query starts here."""
    return (
        select(Series, Part)
        .join(Part, Part.series_id == Series.id)
        .where(Part.first_sent_at.is_not(None), Series.in_archive.is_(True))
    )


def _value(series: Series, part: Part) -> Published:
    assert part.first_sent_at is not None
    return Published(
        series.slug,
        part.number,
        series.title,
        series.description,
        series.kind == BROADCAST_KIND,
        part.title,
        part.summary,
        part.body_md,
        part.first_sent_at,
        part.corrected_at,
    )


def published(session: Session, limit: int | None = None) -> list[Published]:
    """Everything published, newest first (the feeds)."""
    query = _published().order_by(Part.first_sent_at.desc(), Part.id.desc())
    if limit is not None:
        query = query.limit(limit)
    return [_value(s, p) for s, p in session.execute(query).all()]


def published_by_series(session: Session) -> list[Published]:
    """Everything published, by series (their order) then part number (the archive page)."""
    query = _published().order_by(Series.order, Series.id, Part.number)
    return [_value(s, p) for s, p in session.execute(query).all()]


def published_part(session: Session, slug: str, number: int) -> Published | None:
    """One published part, None when it doesn't exist or isn't published."""
    row = session.execute(_published().where(Series.slug == slug, Part.number == number)).first()
    return None if row is None else _value(row[0], row[1])


def published_numbers(session: Session, slug: str) -> list[int]:
    """The published part numbers of one series, in order (the part page's previous / next)."""
    query = _published().with_only_columns(Part.number).where(Series.slug == slug)
    return list(session.scalars(query.order_by(Part.number)))
