"""The therapist's series work: queue a series for everyone, pause and resume it, reload the files."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from newsletter.content import series as content
from newsletter.core.config import Settings
from newsletter.engine import schedule, series_queue
from newsletter.services.people import BATCH, sync_queue
from newsletter.store import series as series_store
from newsletter.store.db import session_scope
from newsletter.store.models import (
    ACTIVE,
    ENROLLED_ACTIVE,
    LIVE,
    PAUSED,
    SERIES_KIND,
    Enrollment,
    Series,
    Subscriber,
)

MAX_START_DAYS = 3653  # a queue date more than ten years out is a typo (and 9999-12-31 overflows)


class SeriesAdminError(Exception):
    """A request that can't be carried out; the message says why and fits on one line."""


@dataclass(frozen=True)
class Queued:
    """What queueing a series did: for how many people, and the first date anything goes out."""

    count: int
    first_date: dt.date | None


@dataclass(frozen=True)
class Choice:
    """A series as a form offers it (a checkbox or an option)."""

    slug: str
    title: str


def choices(session: Session, *, live_only: bool = False) -> list[Choice]:
    """The series (never broadcasts) in queue order; only live ones with `live_only`."""
    query = select(Series.slug, Series.title).where(Series.kind == SERIES_KIND)
    if live_only:
        query = query.where(Series.state == LIVE)
    return [
        Choice(slug, title)
        for slug, title in session.execute(query.order_by(Series.order, Series.id))
    ]


def check_start(start: dt.date | None, today: dt.date) -> None:
    """SeriesAdminError unless `start` is at most ten years from today (past dates mean "now")."""
    if start is not None and (start - today).days > MAX_START_DAYS:
        raise SeriesAdminError(
            f"the start date {start.isoformat()} is more than ten years away; "
            "use a date like 2026-03-09"
        )


def queue_series(
    settings: Settings, slug: str, start: dt.date | None, now: dt.datetime
) -> Queued | None:
    """Make a series live and append it to every active subscriber's queue (engine's
    series_queue.queue_series), then mirror Redis. None when there is no such series;
    SeriesAdminError for a start date too far away or a series that can't be queued."""
    check_start(start, now.date())
    with session_scope(settings.database_url) as session:
        if session.scalar(select(Series.id).where(Series.slug == slug)) is None:
            return None
        try:
            report = series_queue.queue_series(session, slug, start, now)
        except series_queue.ScheduleError as exc:
            raise SeriesAdminError(str(exc)) from None
    sync_queue(settings, report.enrollment_ids)
    return Queued(report.count, report.first_date)


def sync_series_queue(settings: Settings, series_id: int) -> None:
    """Mirror every enrollment of one series into Redis (after a pause or resume)."""
    with session_scope(settings.database_url) as session:
        ids = list(session.scalars(select(Enrollment.id).where(Enrollment.series_id == series_id)))
    sync_queue(settings, ids)


def pause_series(settings: Settings, slug: str) -> str | None:
    """Pause a live series for everyone (nothing from it goes out); its title, None if unknown."""
    with session_scope(settings.database_url) as session:
        series = session.scalar(select(Series).where(Series.slug == slug))
        if series is None:
            return None
        if series.state == LIVE:
            series.state = PAUSED
        title, series_id = series.title, series.id
    sync_series_queue(settings, series_id)
    return title


def resume_series(settings: Settings, slug: str, now: dt.datetime) -> str | None:
    """Resume a paused series: each reader's next part at their next slot (no catch-up burst);
    its title, None if unknown."""
    with session_scope(settings.database_url) as session:
        series = session.scalar(select(Series).where(Series.slug == slug))
        if series is None:
            return None
        if series.state == PAUSED:
            series.state = LIVE
        title, series_id = series.title, series.id
        ids = list(
            session.scalars(
                select(Enrollment.subscriber_id).where(
                    Enrollment.series_id == series_id, Enrollment.state == ENROLLED_ACTIVE
                )
            )
        )
        for start in range(0, len(ids), BATCH):
            for sub in session.scalars(
                select(Subscriber).where(
                    Subscriber.id.in_(ids[start : start + BATCH]), Subscriber.status == ACTIVE
                )
            ):
                schedule.reschedule(session, sub, now, resuming=True)
            session.flush()
    sync_series_queue(settings, series_id)
    return title


def reload_series(settings: Settings, now: dt.datetime) -> tuple[int, series_store.SyncReport]:
    """Read schedules/ again into the database; parts appended to a series reach everyone
    enrolled who has not had them. (number of series read, what changed); ContentError."""
    specs = content.load_all(settings.schedules_dir)
    changed: list[int] = []
    with session_scope(settings.database_url) as session:
        report = series_store.sync(session, specs)
        for slug in report.appended:
            series_id = session.scalar(select(Series.id).where(Series.slug == slug))
            if series_id is not None:
                changed += series_queue.parts_appended(session, series_id, now)
    sync_queue(settings, changed)
    return len(specs), report
