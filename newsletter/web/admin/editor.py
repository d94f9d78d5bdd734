"""The series editor pages: write a series in the browser, preview each part live, save to schedules/.

Limits the counters use (what inbox lists show before cutting the text off; README, "Writing a
series in the browser"): a subject of about 60 characters on a desktop list and about 40 in a
phone's portrait list; an inbox preview line of about 90 characters.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from html import escape as html_escape
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse, Response

from newsletter.content.writing import PartText, SeriesText, slugify
from newsletter.core.config import Settings
from newsletter.core.timing import utcnow
from newsletter.core.vocabulary import BROADCAST_KIND, CADENCES, SERIES_KIND, WEEKDAYS, WEEKLY
from newsletter.mail import render
from newsletter.mail.message import Message
from newsletter.services import series_editor
from newsletter.services.editor_words import Problem
from newsletter.web.admin.common import form_of, page, redirect, require_admin, settings_of
from newsletter.web.admin.preview import email_frame

SUBJECT_LIMIT = 60  # desktop inbox lists (Gmail, Outlook, Apple Mail) show about this many
SUBJECT_PHONE = 40  # a phone's inbox list in portrait shows about this many
PREVIEW_LIMIT = 90  # the inbox preview line shown after (or under) the subject
MAX_PARTS = 200
# The most text (subject, preview line and article, in characters) a live preview renders:
# a long article is about 20,000; rendering runs in a worker thread, and this keeps one request
# from holding it for seconds. The request itself is capped in web/security.py BODY_LIMITS.
PREVIEW_MAX_TEXT = 200_000
DARK_QUERY = "@media (prefers-color-scheme: dark)"
# The editor page: its own scripts and styles only, the preview frame from this site, and the
# preview requests (fetch) to this site.
EDITOR_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "frame-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'"
)
DAYS = tuple(day.capitalize() for day in WEEKDAYS)
# What the counters and the inbox line of the preview panel (admin/_letter_preview.html) go by.
LIMITS = {"subject": SUBJECT_LIMIT, "subject_phone": SUBJECT_PHONE, "preview": PREVIEW_LIMIT}

protected = APIRouter(prefix="/admin", dependencies=[Depends(require_admin)])


@dataclass(frozen=True)
class _Sample:
    """The series and part as the renderer needs them (render.SeriesLike / PartLike)."""

    slug: str
    title: str
    number: int
    summary: str
    body_md: str
    kind: str = SERIES_KIND


# The preview form's "kind" -> what the letter is rendered as: a series part (the editor) or
# one letter (the broadcasts page, which shares this editor's preview).
PREVIEW_KINDS = {"": SERIES_KIND, "broadcast": BROADCAST_KIND}


class _PreviewRenderer(render.Renderer):
    """The email renderer for previews: templates compiled once per process, but no cache of
    rendered articles (every pause in typing would add one)."""

    def article(self, series: Any, part: Any, part_count: int) -> Message:
        try:
            return super().article(series, part, part_count)
        finally:
            self._articles.clear()


_renderers: dict[str, tuple[tuple[Any, ...], _PreviewRenderer]] = {}


def _renderer(settings: Settings) -> render.Renderer:
    """One preview renderer for these settings (with the admin's saved practice details) and
    these template files; a new one when either changes."""
    current = settings  # effective: settings_of(request)
    folder = Path(current.templates_dir)
    stamp = tuple(
        sorted((str(p), p.stat().st_mtime_ns, p.stat().st_size) for p in folder.rglob("*"))
    )
    key = current.model_dump_json()
    found = _renderers.get(key)
    if found is not None and found[0] == stamp:
        return found[1]
    _renderers.clear()
    renderer = _PreviewRenderer(settings)
    _renderers[key] = (stamp, renderer)
    return renderer


def _blank() -> SeriesText:
    return SeriesText(
        slug="",
        title="",
        description="",
        send_day=1,
        send_time="09:00",
        cadence=WEEKLY,
        parts=[PartText("", "", "")],
    )


def _editor_page(
    request: Request,
    text: SeriesText,
    *,
    slug: str | None,
    token: str,
    sent: dict[str, series_editor.SentPart],
    problems: list[Problem] | None = None,
    status: int = 200,
) -> Response:
    errors: dict[str, list[str]] = {}
    for problem in problems or []:
        errors.setdefault(problem.field, []).append(problem.message)
    response = page(
        request,
        "admin/editor.html",
        {
            "nav": "series",
            "text": text,
            "slug": slug,
            "token": token,
            "sent": sent,
            "errors": errors,
            "days": DAYS,
            "cadences": list(CADENCES),
            "limits": LIMITS,
            "action": "/admin/series/new" if slug is None else f"/admin/series/{slug}/edit",
        },
        status,
    )
    response.headers["content-security-policy"] = EDITOR_CSP
    return response


@protected.get("/series/new", response_class=HTMLResponse, include_in_schema=False)
def new_series(request: Request) -> Response:
    return _editor_page(request, _blank(), slug=None, token=series_editor.NEW_TOKEN, sent={})


@protected.get("/series/{slug}/edit", response_class=HTMLResponse, include_in_schema=False)
def edit_series(request: Request, slug: str) -> Response:
    settings = settings_of(request)
    try:
        opened = series_editor.open_series(settings, slug)
    except series_editor.EditorError as exc:
        return _broken(request, slug, exc.problems)
    if opened is None:
        raise HTTPException(404, "no such series")
    return _editor_page(request, opened.text, slug=slug, token=opened.token, sent=opened.sent)


def _broken(request: Request, slug: str, problems: list[Problem]) -> Response:
    """The files can't be read into the form: say so, in the validator's words."""
    return page(
        request,
        "admin/editor_broken.html",
        {"nav": "series", "slug": slug, "problems": [p.message for p in problems]},
        422,
    )


def _text_from(form: Any, slug: str | None) -> tuple[SeriesText, list[Problem]]:
    """The form's values as a series; problems only for values no form control can send."""
    problems: list[Problem] = []
    day = str(form.get("send_day") or "")
    if not (day.isdecimal() and int(day) < len(WEEKDAYS)):
        problems.append(Problem("send_day", "Choose the day of the week it goes out."))
    fields = [form.getlist(f"part_{key}") for key in ("filename", "title", "summary", "body")]
    if len({len(values) for values in fields}) != 1 or len(fields[0]) > MAX_PARTS:
        raise HTTPException(400, "the parts in the form don't line up; reload the page")
    parts = [
        PartText(filename=str(n), title=str(t), summary=str(s), body=str(b))
        for n, t, s, b in zip(*fields, strict=True)
    ]
    title = str(form.get("title") or "")
    chosen = str(form.get("slug") or "").strip() or slugify(title)
    text = SeriesText(
        slug=slug if slug is not None else chosen,
        title=title,
        description=str(form.get("description") or ""),
        send_day=int(day) if not problems else 0,
        send_time=str(form.get("send_time") or "").strip(),
        cadence=str(form.get("cadence") or WEEKLY),
        parts=parts,
    )
    return text, problems


async def _save(request: Request, slug: str | None) -> Response:
    form = await form_of(request)
    settings = settings_of(request)
    text, problems = _text_from(form, slug)
    token = str(form.get("token") or "")
    sent = await run_in_threadpool(series_editor.sent_parts, settings, slug) if slug else {}
    if not problems:
        try:  # files, validation, rendering every part and the sync: off the event loop
            saved = await run_in_threadpool(
                series_editor.save, settings, slug, text, token, utcnow()
            )
        except series_editor.EditorError as exc:
            problems = exc.problems
    if problems:
        shown = replace(text, slug=str(form.get("slug") or "")) if slug is None else text
        return _editor_page(
            request, shown, slug=slug, token=token, sent=sent, problems=problems, status=422
        )
    flag = "created" if slug is None else "saved"
    return redirect(
        request,
        f"/admin/series/{saved.slug}/edit?{flag}=1",
        f"Saved “{' '.join(text.title.split())}”"
        f"{'' if saved.written or saved.removed else ' (no changes)'}: {saved.summary}.",
    )


@protected.post("/series/new", include_in_schema=False)
async def create_series(request: Request) -> Response:
    return await _save(request, None)


@protected.post("/series/{slug}/edit", include_in_schema=False)
async def update_series(request: Request, slug: str) -> Response:
    return await _save(request, slug)


def _preview(request: Request, form: Any) -> tuple[str, str, str, str]:
    """(subject, inbox preview line, html, text) of the part in the form, for a sample reader."""
    settings = settings_of(request)
    raw_number, raw_count = str(form.get("number") or "1"), str(form.get("count") or "1")
    number = int(raw_number) if raw_number.isdecimal() and len(raw_number) < 5 else 1
    count = int(raw_count) if raw_count.isdecimal() and len(raw_count) < 5 else 1
    series_title = " ".join(str(form.get("series_title") or "").split()) or "Untitled series"
    slug = str(form.get("slug") or "") or slugify(series_title) or "new-series"
    part = _Sample(
        slug=slug,
        title=" ".join(str(form.get("title") or "").split()) or "(no subject yet)",
        number=number,
        summary=" ".join(str(form.get("summary") or "").split()),
        body_md=str(form.get("body") or ""),  # line breaks already LF (web/forms.py)
    )
    kind = PREVIEW_KINDS.get(str(form.get("kind") or ""), SERIES_KIND)
    series = _Sample(slug, series_title, 0, "", "", kind)
    message = _renderer(settings).article(series, part, max(count, number))
    base = settings.public_url.rstrip("/")
    values = render.personal_values(
        name="Sample Reader",
        unsubscribe_url=f"{base}/unsubscribe/sample-link",
        preferences_url=f"{base}/preferences/sample-link",
    )
    return (
        render.personalise(message.subject, values),
        message.preheader,
        render.personalise(message.html, values),
        render.personalise(message.text, values),
    )


def _too_long(form: Any) -> str | None:
    """Why the form's text is too long to preview, or None."""
    size = sum(
        len(str(form.get(name) or "")) for name in ("series_title", "title", "summary", "body")
    )
    if size <= PREVIEW_MAX_TEXT:
        return None
    return (
        f"This part is too long to preview ({size:,} characters; the preview shows up to "
        f"{PREVIEW_MAX_TEXT:,}). Your text is safe; split it into two parts to see it."
    )


@protected.post("/series-editor/preview", include_in_schema=False)
async def preview_json(request: Request) -> Response:
    """Subject, inbox line and plain text of the part being written (the page calls it as the
    writer types); rendered in a worker thread, never on the event loop."""
    form = await form_of(request)
    too_long = _too_long(form)
    if too_long is not None:
        return JSONResponse({"error": too_long}, 413, headers={"cache-control": "no-store"})
    subject, preheader, _html, text = await run_in_threadpool(_preview, request, form)
    body = {
        "subject": subject,
        "preheader": preheader,
        "text": text,
        "limits": {"subject": SUBJECT_LIMIT, "preview": PREVIEW_LIMIT},
    }
    return JSONResponse(body, headers={"cache-control": "no-store"})


@protected.post("/series-editor/email.html", response_class=HTMLResponse, include_in_schema=False)
async def preview_html(request: Request) -> Response:
    """The email of the part being written, for the preview frame (rendered in a worker
    thread); mode=dark applies the email's dark-mode styles as mail apps in dark mode do."""
    form = await form_of(request)
    too_long = _too_long(form)
    if too_long is not None:
        frame = email_frame(f"<!doctype html><p>{html_escape(too_long)}</p>")
        frame.status_code = 413
        return frame
    _subject, _preheader, html, _text = await run_in_threadpool(_preview, request, form)
    if form.get("mode") == "dark":
        html = html.replace(DARK_QUERY, "@media all")
    return email_frame(html)
