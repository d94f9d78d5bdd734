"""Series pages: the list, reload from schedules/, queue, pause and resume."""

from __future__ import annotations

import datetime as dt
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import exists, func, select
from sqlalchemy.orm import Session

from newsletter.content import series as content
from newsletter.core.vocabulary import SERIES_KIND
from newsletter.services import series_admin
from newsletter.store import series as series_store
from newsletter.store import stats
from newsletter.store.db import session_scope
from newsletter.store.models import (
    ACTIVE,
    Enrollment,
    Part,
    Series,
    Subscriber,
    utcnow,
)
from newsletter.web.admin.common import (
    Db,
    form_of,
    page,
    redirect,
    require_admin,
    settings_of,
)
from newsletter.web.dates import format_day

DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
protected = APIRouter(prefix="/admin", dependencies=[Depends(require_admin)])


def find_series(db: Session, slug: str) -> Series:
    series = series_store.by_slug(db, slug)
    if series is None:
        raise HTTPException(404, "no such series")
    return series


def parts_of(db: Session, series: Series) -> list[Part]:
    return list(db.scalars(select(Part).where(Part.series_id == series.id).order_by(Part.number)))


SAMPLE = 6  # people named on the queue form


def _sample(db: Session, series: Series, takes: bool, count: int) -> list[Subscriber]:
    """The first SAMPLE active readers (by id) not in `series` whose takes_new_series is
    `takes`; no query when the count says there are none (that search reads every reader)."""
    if count <= 0:
        return []
    # NOT EXISTS: an anti-join on PostgreSQL (NOT IN over the enrollments was twice as slow)
    outside = ~exists(
        select(Enrollment.id).where(
            Enrollment.subscriber_id == Subscriber.id, Enrollment.series_id == series.id
        )
    )
    where = (Subscriber.status == ACTIVE, Subscriber.takes_new_series.is_(takes), outside)
    return list(db.scalars(select(Subscriber).where(*where).order_by(Subscriber.id).limit(SAMPLE)))


def _who(
    db: Session, series: Series, counts: stats.QueueCounts, active: dict[bool, int]
) -> dict[str, Any]:
    """Who queuing this series adds (active, taking new series, not in it yet) and who their own
    choice leaves out (active, not in it, chose particular series only): counts and a few names.
    The counts are the active readers less those already in the series (any state)."""
    reach = active.get(True, 0) - counts.enrolled.get((series.id, True), 0)
    left_out = active.get(False, 0) - counts.enrolled.get((series.id, False), 0)
    return {
        "reach": reach,
        "added": _sample(db, series, True, reach),
        "left_out": left_out,
        "excluded": _sample(db, series, False, left_out),
    }


def _starts(db: Session) -> dict[int, dt.date]:
    """series id -> the start date chosen when it was queued (the earliest, if queued twice):
    one index look-up per series (ix_enrollments_series_not_before), not a pass over all."""
    earliest = (
        select(func.min(Enrollment.not_before))
        .where(Enrollment.series_id == Series.id, Enrollment.not_before.is_not(None))
        .scalar_subquery()
    )
    rows = db.execute(select(Series.id, earliest))
    return {sid: start for sid, start in rows if start is not None}


@protected.get("/series", response_class=HTMLResponse, include_in_schema=False)
def series_list(request: Request, db: Db) -> Response:
    return page(request, "admin/series.html", {**_series_context(db), "errors": None})


@protected.post("/series/reload", include_in_schema=False)
async def series_reload(request: Request) -> Response:
    await form_of(request)
    settings = settings_of(request)
    try:
        read, report = series_admin.reload_series(settings, utcnow())
    except content.ContentError as exc:
        with session_scope(settings.database_url) as session:
            return _series_errors(request, session, list(exc.errors))
    parts = [f"{read} series read from {settings.schedules_dir}"]
    if report.new_series:
        parts.append(f"new (drafts until queued): {', '.join(report.new_series)}")
    for slug, numbers in report.appended.items():
        parts.append(f"{slug}: parts {', '.join(map(str, numbers))} added")
    return redirect(request, "/admin/series", "; ".join(parts) + ".")


def _series_errors(request: Request, db: Session, errors: list[str]) -> Response:
    return page(
        request,
        "admin/series.html",
        {**_series_context(db), "errors": errors},
        422,
    )


def _series_context(db: Session) -> dict[str, Any]:
    shown = list(
        db.scalars(
            select(Series).where(Series.kind == SERIES_KIND).order_by(Series.order, Series.id)
        )
    )
    counts = stats.queue_counts(db)
    active = stats.active_by_choice(db)
    sent = stats.sent_counts(db, [s.id for s in shown])
    today = utcnow().date()
    starts = _starts(db)
    parts: dict[int, list[Part]] = {}
    for p in db.scalars(
        select(Part).where(Part.series_id.in_([s.id for s in shown])).order_by(Part.number)
    ):
        parts.setdefault(p.series_id, []).append(p)
    rows: list[dict[str, Any]] = [
        {
            "start": starts.get(s.id),
            "next": counts.upcoming.get(s.id),
            "first_possible": first_weekday(today, s.send_day),
            "series": s,
            "day": DAYS[s.send_day],
            "parts": parts.get(s.id, []),
            "waiting": counts.waiting.get(s.id, {}),
            "sent": {k[1]: v for k, v in sent.items() if k[0] == s.id},
            **_who(db, s, counts, active),
        }
        for s in shown
    ]
    return {"nav": "series", "rows": rows, "default_start": today}


def first_weekday(start: dt.date, weekday: int) -> dt.date:
    """The first date on or after `start` that falls on `weekday` (0 = Monday)."""
    return start + dt.timedelta(days=(weekday - start.weekday()) % 7)


@protected.post("/series/{slug}/queue", include_in_schema=False)
async def series_queue(request: Request, slug: str) -> Response:
    form = await form_of(request)
    settings = settings_of(request)
    raw = str(form.get("start") or "").strip()
    try:
        start = dt.date.fromisoformat(raw) if raw else None
    except ValueError:
        return redirect(
            request, "/admin/series", "The start date should look like 2026-03-09.", "error"
        )
    try:
        queued = series_admin.queue_series(settings, slug, start, utcnow())
    except series_admin.SeriesAdminError as exc:
        return redirect(request, "/admin/series", f"Not queued: {exc}.", "error")
    if queued is None:
        raise HTTPException(404, "no such series")
    count, first = queued.count, queued.first_date
    with session_scope(settings.database_url) as db:
        title = find_series(db, slug).title
    when = f"the first gets part 1 on {format_day(first)}" if first else "nobody is due yet"
    return redirect(
        request,
        "/admin/series",
        f"Queued “{title}” for {count} subscriber{'s' if count != 1 else ''}; {when}.",
    )


@protected.post("/series/{slug}/pause", include_in_schema=False)
async def series_pause(request: Request, slug: str) -> Response:
    await form_of(request)
    title = series_admin.pause_series(settings_of(request), slug)
    if title is None:
        raise HTTPException(404, "no such series")
    return redirect(
        request, "/admin/series", f"Paused “{title}” for everyone: nothing from it goes out."
    )


@protected.post("/series/{slug}/resume", include_in_schema=False)
async def series_resume(request: Request, slug: str) -> Response:
    await form_of(request)
    title = series_admin.resume_series(settings_of(request), slug, utcnow())
    if title is None:
        raise HTTPException(404, "no such series")
    return redirect(
        request, "/admin/series", f"Resumed “{title}”: each reader gets their next part."
    )
