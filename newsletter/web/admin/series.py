"""Series pages: the list, reload from schedules/, queue, pause and resume; the correction of a
sent part (services.corrections)."""

from __future__ import annotations

import datetime as dt
import secrets
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, Response

from newsletter.content import series as content
from newsletter.core.timing import utcnow
from newsletter.services import corrections, series_admin
from newsletter.services.reader_tools import ToolError
from newsletter.store.db import Session, session_scope
from newsletter.web.admin.common import (
    Db,
    PartNumber,
    form_of,
    page,
    redirect,
    require_admin,
    settings_of,
)
from newsletter.web.dates import format_day

protected = APIRouter(prefix="/admin", dependencies=[Depends(require_admin)])


def find_series(db: Session, slug: str) -> series_admin.SeriesView:
    series = series_admin.find(db, slug)
    if series is None:
        raise HTTPException(404, "no such series")
    return series


def parts_of(db: Session, series: series_admin.SeriesView) -> list[series_admin.PartView]:
    return series_admin.parts(db, series.id)


@protected.get("/series", response_class=HTMLResponse, include_in_schema=False)
def series_list(request: Request, db: Db) -> Response:
    return page(request, "admin/series.html", {**_series_context(db), "errors": None})


@protected.post("/series/reload", include_in_schema=False)
async def series_reload(request: Request) -> Response:
    await form_of(request)
    settings = settings_of(request)
    try:
        read, report = await run_in_threadpool(series_admin.reload_series, settings, utcnow())
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
    today = utcnow().date()
    return {"nav": "series", "rows": series_admin.overview(db, today), "default_start": today}


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
        # every active reader's place written (90,000 rows at 100k readers): off the event loop
        queued = await run_in_threadpool(series_admin.queue_series, settings, slug, start, utcnow())
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
    title = await run_in_threadpool(series_admin.pause_series, settings_of(request), slug)
    if title is None:
        raise HTTPException(404, "no such series")
    return redirect(
        request, "/admin/series", f"Paused “{title}” for everyone: nothing from it goes out."
    )


@protected.post("/series/{slug}/resume", include_in_schema=False)
async def series_resume(request: Request, slug: str) -> Response:
    await form_of(request)
    title = await run_in_threadpool(
        series_admin.resume_series, settings_of(request), slug, utcnow()
    )
    if title is None:
        raise HTTPException(404, "no such series")
    return redirect(
        request, "/admin/series", f"Resumed “{title}”: each reader gets their next part."
    )


def _correction_page(
    request: Request,
    found: corrections.CorrectionForm,
    values: dict[str, str] | None = None,
    error: str | None = None,
) -> Response:
    return page(
        request,
        "admin/correction.html",
        {
            "nav": "series",
            "part": found,
            "values": values
            or {"title": found.title, "summary": found.summary, "body": found.body},
            "error": error,
            "form_key": secrets.token_urlsafe(12),  # one correction mail per reader per form
        },
        400 if error else 200,
    )


@protected.get(
    "/series/{slug}/{number}/correct", response_class=HTMLResponse, include_in_schema=False
)
def correction_form(request: Request, slug: str, number: PartNumber) -> Response:
    """Fix the text of a part already sent (only sent parts: the others are edited as usual)."""
    found = corrections.open_part(settings_of(request), slug, number)
    if found is None:
        raise HTTPException(404, "no such sent part")
    return _correction_page(request, found)


@protected.post("/series/{slug}/{number}/correct", include_in_schema=False)
async def correction_save(request: Request, slug: str, number: PartNumber) -> Response:
    form = await form_of(request)
    settings = settings_of(request)
    found = corrections.open_part(settings, slug, number)
    if found is None:
        raise HTTPException(404, "no such sent part")
    values = {k: str(form.get(k) or "")[:100_000] for k in ("title", "summary", "body")}
    try:
        done = await run_in_threadpool(  # mails every reader who had it: never on the loop
            corrections.correct,
            settings,
            slug,
            number,
            title=values["title"],
            summary=values["summary"],
            body=values["body"],
            token=str(form.get("token") or ""),
            send=form.get("send") == "yes",
            key=str(form.get("key") or ""),
            now=utcnow(),
        )
    except (corrections.CorrectionError, ToolError) as exc:
        return _correction_page(request, found, values, str(exc))
    return redirect(
        request,
        f"/admin/series/{slug}/{number}/correct",
        done.message,
        "error" if done.not_sent else "ok",
    )
