"""Previewing one part as a chosen subscriber would get it, and sending it as a test."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, Response

from newsletter.core.config import Settings
from newsletter.mail import render
from newsletter.mail.recipient import recipient
from newsletter.services import mailing, series_admin
from newsletter.services.series_admin import Reader, SeriesView
from newsletter.store import practice
from newsletter.store.db import Session, session_scope
from newsletter.web import words
from newsletter.web.admin.common import (
    Db,
    PartNumber,
    form_of,
    page,
    redirect,
    require_admin,
    settings_of,
)
from newsletter.web.admin.series import find_series, parts_of

# The preview frame shows one email (inline styles, no scripts) and may sit only in our pages;
# `sandbox` keeps it in an origin of its own even when its address is opened on its own tab
# (no scripts, forms, pop-ups or navigation of the admin page, whatever the email holds).
PREVIEW_CSP = (
    "sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src https: data:; "
    "frame-ancestors 'self'; base-uri 'none'; form-action 'none'"
)


def email_frame(html: str) -> HTMLResponse:
    """One email as the preview frame's document: no scripts, framed only by our pages, never
    cached (the preview, the series editor and the outbox viewer all show emails this way)."""
    return HTMLResponse(
        html,
        headers={
            "content-security-policy": PREVIEW_CSP,
            "x-frame-options": "SAMEORIGIN",
            "cache-control": "no-store",
        },
    )


PAGE_WITH_FRAME_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "frame-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


protected = APIRouter(prefix="/admin", dependencies=[Depends(require_admin)])


def _sample(db: Session, subscriber_id: int | None) -> tuple[str | None, str, Reader | None]:
    """(name, public id for links, the chosen subscriber) for a preview."""
    if subscriber_id:
        sub = series_admin.reader(db, subscriber_id)
        if sub is not None:
            return sub.name, sub.public_id, sub
    return "Sample Reader", "sample-preview", None


def _rendered(
    settings: Settings, db: Session, series: SeriesView, number: int, subscriber_id: int | None
) -> tuple[Any, str, str, str, Reader | None]:
    parts = parts_of(db, series)
    part = next((p for p in parts if p.number == number), None)
    if part is None:
        raise HTTPException(404, "no such part")
    message = render.Renderer(settings).article(series, part, len(parts))
    name, _public_id, sub = _sample(db, subscriber_id)
    if sub is not None:
        values = dict(recipient(settings, "preview", sub.public_id, sub.email, sub.name).values)
    else:
        base = settings.public_url.rstrip("/")
        values = render.personal_values(
            name=name,
            unsubscribe_url=f"{base}/unsubscribe/sample-link",
            preferences_url=f"{base}/preferences/sample-link",
        )
    return (
        message,
        render.personalise(message.subject, values),
        render.personalise(message.html, values),
        render.personalise(message.text, values),
        sub,
    )


def _subscriber_param(request: Request) -> int | None:
    raw = request.query_params.get("subscriber", "")
    return int(raw) if raw.isdecimal() and len(raw) < 10 else None


@protected.get("/series/{slug}/{number}", response_class=HTMLResponse, include_in_schema=False)
def part_preview(request: Request, slug: str, number: PartNumber, db: Db) -> Response:
    settings = settings_of(request)
    series = find_series(db, slug)
    chosen = _subscriber_param(request)
    message, subject, _html, text, sub = _rendered(settings, db, series, number, chosen)
    parts = parts_of(db, series)
    people = series_admin.readers(db, series.id)
    if sub is not None and sub not in people:
        people.insert(0, sub)
    response = page(
        request,
        "admin/preview.html",
        {
            "nav": "series",
            "series": series,
            "part": next(p for p in parts if p.number == number),
            "parts": parts,
            "subject": subject,
            "preheader": message.preheader,
            "text": text,
            "people": people,
            "chosen": sub,
            "frame_src": f"/admin/series/{slug}/{number}/email.html"
            + (f"?subscriber={sub.id}" if sub else ""),
            "test_to": settings.reply_to,
        },
    )
    response.headers["content-security-policy"] = PAGE_WITH_FRAME_CSP
    return response


@protected.get(
    "/series/{slug}/{number}/email.html", response_class=HTMLResponse, include_in_schema=False
)
def part_email_html(request: Request, slug: str, number: PartNumber, db: Db) -> Response:
    settings = settings_of(request)
    series = find_series(db, slug)
    _m, _s, html, _t, _sub = _rendered(settings, db, series, number, _subscriber_param(request))
    return email_frame(html)


@protected.post("/series/{slug}/{number}/test", include_in_schema=False)
async def part_test_send(request: Request, slug: str, number: PartNumber) -> Response:
    form = await form_of(request)  # rendering and the provider's call: off the event loop
    return await run_in_threadpool(_test_send, request, slug, number, str(form.get("to") or ""))


def _test_send(request: Request, slug: str, number: int, to: str) -> Response:
    settings = settings_of(request)
    where = f"/admin/series/{slug}/{number}"
    with session_scope(settings.database_url) as db:
        series = find_series(db, slug)
        parts = parts_of(db, series)
        part = next((p for p in parts if p.number == number), None)
        if part is None:
            raise HTTPException(404, "no such part")
        article = render.Renderer(settings).article(series, part, len(parts))
    result = mailing.send_test(settings, to, article)
    if result.ok:
        with session_scope(settings.database_url) as db:
            practice.note_test_sent(db)  # ticks "send yourself a test" on the dashboard
        return redirect(request, where, words.test_sent(result.backend))
    return redirect(request, where, words.test_failed(result.status, result.detail), "error")
