"""The therapist's series work: queue a series for everyone, pause and resume it, reload the files."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from newsletter.content import series as content
from newsletter.core.config import Settings
from newsletter.core.vocabulary import WEEKDAYS
from newsletter.engine import schedule, series_queue
from newsletter.mail.render import Renderer
from newsletter.services.people import BATCH, sync_queue
from newsletter.store import series as series_store
from newsletter.store import stats
from newsletter.store.db import session_scope
from newsletter.store.models import (
    ACTIVE,
    ENROLLED_ACTIVE,
    LIVE,
    PAUSED,
    SERIES_KIND,
    Enrollment,
    Part,
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


@dataclass(frozen=True)
class SeriesView:
    """A series as the admin, the API and the renderer (render.SeriesLike) read it."""

    id: int
    slug: str
    title: str
    description: str
    state: str
    kind: str
    send_day: int  # 0 = Monday
    send_time: str
    cadence: str
    queued_at: dt.datetime | None
    in_archive: bool


@dataclass(frozen=True)
class PartView:
    """A part as the admin, the API and the renderer (render.PartLike) read it."""

    number: int
    title: str
    summary: str
    body_md: str
    content_hash: str
    first_sent_at: dt.datetime | None


@dataclass(frozen=True)
class Reader:
    """A reader named on the series pages (samples, a preview's choice of person); the public
    id only makes a preview's links."""

    id: int
    name: str | None
    email: str
    public_id: str


SERIES_FIELDS = tuple(SeriesView.__dataclass_fields__)
PART_FIELDS = tuple(PartView.__dataclass_fields__)
READER_FIELDS = tuple(Reader.__dataclass_fields__)


def _series_view(row: Series) -> SeriesView:
    return SeriesView(**{name: getattr(row, name) for name in SERIES_FIELDS})


def _part_view(row: Part) -> PartView:
    return PartView(**{name: getattr(row, name) for name in PART_FIELDS})


def _reader(row: Subscriber) -> Reader:
    return Reader(**{name: getattr(row, name) for name in READER_FIELDS})


def find(session: Session, slug: str) -> SeriesView | None:
    """The series (or broadcast) with this slug; None if unknown."""
    row = series_store.by_slug(session, slug)
    return _series_view(row) if row is not None else None


def parts(session: Session, series_id: int) -> list[PartView]:
    """The series' parts in order."""
    query = select(Part).where(Part.series_id == series_id).order_by(Part.number)
    return [_part_view(p) for p in session.scalars(query)]


def listing(session: Session) -> list[tuple[SeriesView, list[PartView]]]:
    """Every series (never broadcasts: see services.broadcasts) in queue order, with its parts."""
    shown = [
        _series_view(s)
        for s in session.scalars(
            select(Series).where(Series.kind == SERIES_KIND).order_by(Series.order, Series.id)
        )
    ]
    by_series: dict[int, list[PartView]] = {}
    query = select(Part).where(Part.series_id.in_([s.id for s in shown])).order_by(Part.number)
    for p in session.scalars(query):
        by_series.setdefault(p.series_id, []).append(_part_view(p))
    return [(s, by_series.get(s.id, [])) for s in shown]


def reader(session: Session, subscriber_id: int) -> Reader | None:
    row = session.get(Subscriber, subscriber_id)
    return _reader(row) if row is not None else None


def readers(session: Session, series_id: int, limit: int = 200) -> list[Reader]:
    """Active readers enrolled in the series, by address (a preview's choice of person)."""
    query = (
        select(Subscriber)
        .join(Enrollment, Enrollment.subscriber_id == Subscriber.id)
        .where(Enrollment.series_id == series_id, Subscriber.status == ACTIVE)
        .order_by(Subscriber.email_key)
        .limit(limit)
    )
    return [_reader(row) for row in session.scalars(query)]


SAMPLE = 6  # people named on the queue form


def _sample(session: Session, series_id: int, takes: bool, count: int) -> list[Reader]:
    """The first SAMPLE active readers (by id) not in the series whose takes_new_series is
    `takes`; no query when the count says there are none (that search reads every reader)."""
    if count <= 0:
        return []
    # NOT EXISTS: an anti-join on PostgreSQL (NOT IN over the enrollments was twice as slow)
    outside = ~exists(
        select(Enrollment.id).where(
            Enrollment.subscriber_id == Subscriber.id, Enrollment.series_id == series_id
        )
    )
    where = (Subscriber.status == ACTIVE, Subscriber.takes_new_series.is_(takes), outside)
    query = select(Subscriber).where(*where).order_by(Subscriber.id).limit(SAMPLE)
    return [_reader(row) for row in session.scalars(query)]


def _starts(session: Session) -> dict[int, dt.date]:
    """series id -> the start date it was last queued with (`series queue --start`)."""
    rows = session.execute(select(Series.id, Series.starts_on).where(Series.starts_on.is_not(None)))
    return {sid: start for sid, start in rows if start is not None}


def first_weekday(start: dt.date, weekday: int) -> dt.date:
    """The first date on or after `start` that falls on `weekday` (0 = Monday)."""
    return start + dt.timedelta(days=(weekday - start.weekday()) % 7)


@dataclass(frozen=True)
class SeriesRow:
    """One series on the admin's series page: its parts, numbers, and who queueing it adds
    (active, taking new series, not in it yet) or leaves out by their own choice (active, not
    in it, chose particular series only), with a few names."""

    series: SeriesView
    parts: list[PartView]
    start: dt.date | None
    next: stats.SeriesNext | None
    first_possible: dt.date
    waiting: dict[int, int]
    sent: dict[int, int]
    reach: int
    added: list[Reader]
    left_out: int
    excluded: list[Reader]

    @property
    def day(self) -> str:
        return WEEKDAYS[self.series.send_day].capitalize()


def overview(session: Session, today: dt.date) -> list[SeriesRow]:
    """The admin's series page, one row per series in queue order. The reach counts are the
    active readers less those already in the series (any state)."""
    shown = listing(session)
    counts = stats.queue_counts(session)
    active = stats.active_by_choice(session)
    sent = stats.sent_counts(session, [s.id for s, _ in shown])
    starts = _starts(session)
    rows = []
    for s, its_parts in shown:
        reach = active.get(True, 0) - counts.enrolled.get((s.id, True), 0)
        left_out = active.get(False, 0) - counts.enrolled.get((s.id, False), 0)
        rows.append(
            SeriesRow(
                series=s,
                parts=its_parts,
                start=starts.get(s.id),
                next=counts.upcoming.get(s.id),
                first_possible=first_weekday(today, s.send_day),
                waiting=counts.waiting.get(s.id, {}),
                sent={k[1]: v for k, v in sent.items() if k[0] == s.id},
                reach=reach,
                added=_sample(session, s.id, True, reach),
                left_out=left_out,
                excluded=_sample(session, s.id, False, left_out),
            )
        )
    return rows


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
        if series_store.by_slug(session, slug) is None:
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
        series = series_store.by_slug(session, slug)
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
        series = series_store.by_slug(session, slug)
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
            readers = session.scalars(
                select(Subscriber).where(
                    Subscriber.id.in_(ids[start : start + BATCH]), Subscriber.status == ACTIVE
                )
            )
            schedule.reschedule_each(session, list(readers), now, resuming=True)
            session.flush()
    sync_series_queue(settings, series_id)
    return title


def reload_series(settings: Settings, now: dt.datetime) -> tuple[int, series_store.SyncReport]:
    """Read schedules/ again into the database; parts appended to a series reach everyone
    enrolled who has not had them. (number of series read, what changed); ContentError."""
    specs = content.load_all(settings.schedules_dir)
    return len(specs), _sync_files(settings, specs, now).report


@dataclass(frozen=True)
class Installed:
    """What `newsletter init` did with schedules/: what changed, and (on a database that had no
    series) the series it queued, as (slug, order), in queue order."""

    report: series_store.SyncReport
    queued: tuple[tuple[str, int | None], ...]


def install_series(settings: Settings, now: dt.datetime) -> Installed:
    """`init`'s series step: every series must load and every part render through the email
    templates (ContentError lists every problem; nothing synced), then the files are synced as
    reload_series does. On a database that had no series, all of them are queued by `order`
    (Myths first, then Co-Created) so a fresh install sends them; a folder added later stays a
    draft until queued."""
    problems = content.validate(settings.schedules_dir, check=Renderer(settings).check)
    if problems:
        raise content.ContentError(problems)
    return _sync_files(settings, content.load_all(settings.schedules_dir), now, queue_new=True)


def _sync_files(
    settings: Settings, specs: list[content.SeriesSpec], now: dt.datetime, queue_new: bool = False
) -> Installed:
    """Sync specs into the database (ContentError: nothing changed); with queue_new, a database
    that had no series gets them all queued. Then Redis mirrors the enrollments that changed."""
    changed: list[int] = []
    queued: list[tuple[str, int | None]] = []
    with session_scope(settings.database_url) as session:
        fresh = queue_new and session.scalar(select(Series.id).limit(1)) is None
        report = series_store.sync(session, specs)
        if fresh:
            session.flush()
            for row in session.scalars(select(Series).order_by(Series.order, Series.id)):
                changed += series_queue.queue_series(session, row.slug, None, now).enrollment_ids
                queued.append((row.slug, row.order))
        for slug in report.appended:
            found = series_store.by_slug(session, slug)
            if found is not None:
                changed += series_queue.parts_appended(session, found.id, now)
    sync_queue(settings, changed)
    return Installed(report, tuple(queued))
