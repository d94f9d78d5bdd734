"""Routes: the therapist's admin pages under /admin (login, dashboard, series, subscribers, import)."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import secrets
import time
from collections.abc import Iterator
from pathlib import Path as FilePath
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, HTTPException, Path, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from itsdangerous import BadSignature, URLSafeSerializer
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from starlette.datastructures import UploadFile

from newsletter.core.config import Settings
from newsletter.services import auth, export, importing, mailing, roster, series_admin
from newsletter.store import stats
from newsletter.store.db import session_scope
from newsletter.store.models import (
    ACTIVE,
    ENROLLED_ACTIVE,
    PENDING,
    QUEUED,
    SUBSCRIBER_STATUSES,
    Delivery,
    Enrollment,
    Part,
    ProviderEvent,
    Series,
    Subscriber,
    utcnow,
)
from newsletter.web.pages import render, templates
from newsletter.web.security import client_ip, verify_csrf

DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
FLASH_COOKIE = "nl_flash"
PAGE_SIZE = 50
_IMPORT_ID = re.compile(r"^[A-Za-z0-9_-]{16,40}$")
# The preview frame shows one email (inline styles, no scripts) and may sit only in our pages.
PREVIEW_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src https: data:; "
    "frame-ancestors 'self'; base-uri 'none'; form-action 'none'"
)
PAGE_WITH_FRAME_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "frame-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


class NotLoggedIn(HTTPException):
    def __init__(self) -> None:
        super().__init__(303, "please sign in", {"Location": "/admin/login"})


def settings_of(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def current_session(request: Request) -> auth.AdminSession | None:
    settings = settings_of(request)
    value = request.cookies.get(auth.SESSION_COOKIE)
    if not value:
        return None
    with session_scope(settings.database_url) as db:
        epoch = auth.session_epoch(db)
    return auth.read_session(settings, value, epoch)


def require_admin(request: Request) -> auth.AdminSession:
    """The signed-in admin's session; otherwise a redirect to the login page."""
    session = current_session(request)
    if session is None:
        raise NotLoggedIn()
    return session


def get_db(request: Request) -> Iterator[Session]:
    with session_scope(settings_of(request).database_url) as session:
        yield session


Db = Annotated[Session, Depends(get_db)]
SubscriberId = Annotated[int, Path(ge=1, le=2**31 - 1)]
PartNumber = Annotated[int, Path(ge=1, le=10_000)]
public = APIRouter(prefix="/admin")  # the login page only
protected = APIRouter(prefix="/admin", dependencies=[Depends(require_admin)])


async def form_of(request: Request) -> Any:
    """The submitted form after its CSRF token checks out (CSRFError -> a 400 page)."""
    form = await request.form()
    verify_csrf(request, form.get("csrf_token"))
    return form


# --- presentation helpers ------------------------------------------------------------------


def _local(
    value: dt.datetime | None, zone: str | None = None, fmt: str = "%a %d %b %Y, %H:%M"
) -> str:
    if value is None:
        return "—"
    try:
        tz = ZoneInfo(zone) if zone else dt.UTC
    except (ValueError, KeyError):
        tz = dt.UTC
    return value.astimezone(tz).strftime(fmt)


def _day(value: dt.date | None) -> str:
    return "—" if value is None else value.strftime("%a %d %b %Y")


templates.env.filters["local"] = _local
templates.env.filters["day"] = _day


def _flash_serializer(settings: Settings) -> URLSafeSerializer:
    return URLSafeSerializer(settings.secret, salt="newsletter.admin-flash")


def redirect(request: Request, url: str, message: str | None = None, kind: str = "ok") -> Response:
    """303 to `url`, carrying a one-time message in a signed cookie (never in the URL)."""
    response = RedirectResponse(url, status_code=303)
    if message:
        value = _flash_serializer(settings_of(request)).dumps({"m": message[:600], "k": kind})
        response.set_cookie(FLASH_COOKIE, value, **auth.cookie_options(settings_of(request), 120))
    return response


def page(request: Request, name: str, context: dict[str, Any], status: int = 200) -> HTMLResponse:
    """An admin page: no caching, the one-time message shown and cleared."""
    settings = settings_of(request)
    flash = None
    raw = request.cookies.get(FLASH_COOKIE)
    if raw:
        try:
            flash = _flash_serializer(settings).loads(raw)
        except BadSignature:
            flash = None
    context = {"flash": flash, "zone": settings.default_timezone, "nav": "", **context}
    response = render(request, name, context, status, no_store=True)
    if raw:
        response.delete_cookie(FLASH_COOKIE, path="/")
    return response


# --- login ---------------------------------------------------------------------------------


@public.get("/login", response_class=HTMLResponse, include_in_schema=False)
def login_page(request: Request) -> Response:
    settings = settings_of(request)
    if current_session(request):
        return RedirectResponse("/admin", status_code=303)
    with session_scope(settings.database_url) as session:
        configured = auth.password_configured(settings, session)
    return page(request, "admin/login.html", {"configured": configured, "error": None})


@public.post("/login", include_in_schema=False)
async def login(request: Request) -> Response:
    settings = settings_of(request)
    form = await form_of(request)
    ip = client_ip(request)
    wait = auth.login_blocked(settings, ip)
    if wait:
        response: Response = page(
            request,
            "admin/login.html",
            {
                "configured": True,
                "error": f"Too many attempts. Please wait {max(wait // 60, 1)} minutes and try again.",
            },
            429,
        )
        response.headers["Retry-After"] = str(wait)
        return response
    password = str(form.get("password") or "")[:1000]
    with session_scope(settings.database_url) as session:
        configured = auth.password_configured(settings, session)
        ok = configured and auth.verify_password(settings, session, password)
        epoch = auth.session_epoch(session)
    if not ok:
        auth.record_failure(settings, ip)
        return page(
            request,
            "admin/login.html",
            {"configured": configured, "error": "That password isn't right."},
            401,
        )
    auth.clear_failures(settings, ip)
    response = RedirectResponse("/admin", status_code=303)
    response.set_cookie(
        auth.SESSION_COOKIE, auth.make_session(settings, epoch), **auth.cookie_options(settings)
    )
    return response


@protected.post("/logout", include_in_schema=False)
async def logout(request: Request) -> Response:
    """Sign out: the cookie goes and every session cookie issued so far stops working."""
    await form_of(request)
    with session_scope(settings_of(request).database_url) as db:
        auth.end_all_sessions(db)
    response = RedirectResponse("/admin/login", status_code=303)
    response.delete_cookie(
        auth.SESSION_COOKIE, path="/", secure=settings_of(request).public_is_https, httponly=True
    )
    return response


# --- dashboard -----------------------------------------------------------------------------


@protected.get("", response_class=HTMLResponse, include_in_schema=False)
def dashboard(request: Request, db: Db) -> Response:
    settings = settings_of(request)
    now = utcnow()
    counts = stats.status_counts(db, now)
    week = stats.week_ahead(db, now, settings.default_timezone)
    recent = stats.last_days(db, now)
    halted = stats.sending_halted(db)
    next_send = stats.next_send(db, now)
    return page(
        request,
        "admin/dashboard.html",
        {
            "nav": "dashboard",
            "counts": counts,
            "week": week,
            "recent": recent,
            "halted": halted,
            "next_send": next_send,
            "backend": settings.mail_backend,
            "today": now.astimezone(ZoneInfo(settings.default_timezone)).date(),
        },
    )


@protected.post("/sending/resume", include_in_schema=False)
async def resume_sending(request: Request) -> Response:
    await form_of(request)
    from newsletter.store.halt import resume

    with session_scope(settings_of(request).database_url) as session:
        lifted = resume(session)
    return redirect(
        request,
        "/admin",
        "Sending is on again; the next tick sends what is due."
        if lifted
        else "Sending was already on.",
    )


# --- series --------------------------------------------------------------------------------


def _series(db: Session, slug: str) -> Series:
    series = db.scalar(select(Series).where(Series.slug == slug))
    if series is None:
        raise HTTPException(404, "no such series")
    return series


def _parts(db: Session, series: Series) -> list[Part]:
    return list(db.scalars(select(Part).where(Part.series_id == series.id).order_by(Part.number)))


def _reach(db: Session, series: Series) -> int:
    """Active subscribers taking new series who are not yet enrolled in this one."""
    enrolled = select(Enrollment.subscriber_id).where(Enrollment.series_id == series.id)
    return int(
        db.scalar(
            select(func.count(Subscriber.id)).where(
                Subscriber.status == ACTIVE,
                Subscriber.takes_new_series.is_(True),
                Subscriber.id.not_in(enrolled),
            )
        )
        or 0
    )


@protected.get("/series", response_class=HTMLResponse, include_in_schema=False)
def series_list(request: Request, db: Db) -> Response:
    return page(request, "admin/series.html", {**_series_context(db), "errors": None})


@protected.post("/series/reload", include_in_schema=False)
async def series_reload(request: Request) -> Response:
    await form_of(request)
    from newsletter.content import series as content

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
    waiting = stats.part_counts(db)
    sent = stats.sent_counts(db)
    upcoming = stats.next_by_series(db)
    today = utcnow().date()
    rows: list[dict[str, Any]] = [
        {
            "next": upcoming.get(s.id),
            "first_possible": first_weekday(today, s.send_day),
            "series": s,
            "day": DAYS[s.send_day],
            "parts": _parts(db, s),
            "waiting": waiting.get(s.id, {}),
            "sent": {k[1]: v for k, v in sent.items() if k[0] == s.id},
            "reach": _reach(db, s),
        }
        for s in db.scalars(select(Series).order_by(Series.order, Series.id))
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
        title = _series(db, slug).title
    when = f"the first gets part 1 on {_day(first)}" if first else "nobody is due yet"
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


# --- preview and test send -----------------------------------------------------------------


def _sample(db: Session, subscriber_id: int | None) -> tuple[str | None, str, Subscriber | None]:
    """(name, public id for links, the chosen subscriber) for a preview."""
    if subscriber_id:
        sub = db.get(Subscriber, subscriber_id)
        if sub is not None:
            return sub.name, sub.public_id, sub
    return "Sample Reader", "sample-preview", None


def _rendered(
    settings: Settings, db: Session, series: Series, number: int, subscriber_id: int | None
) -> tuple[Any, str, str, str, Subscriber | None]:
    from newsletter.mail import render
    from newsletter.mail.recipient import recipient

    parts = _parts(db, series)
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
    return int(raw) if raw.isdigit() and len(raw) < 10 else None


@protected.get("/series/{slug}/{number}", response_class=HTMLResponse, include_in_schema=False)
def part_preview(request: Request, slug: str, number: PartNumber, db: Db) -> Response:
    settings = settings_of(request)
    series = _series(db, slug)
    chosen = _subscriber_param(request)
    message, subject, _html, text, sub = _rendered(settings, db, series, number, chosen)
    parts = _parts(db, series)
    people = list(
        db.scalars(
            select(Subscriber)
            .join(Enrollment, Enrollment.subscriber_id == Subscriber.id)
            .where(Enrollment.series_id == series.id, Subscriber.status == ACTIVE)
            .order_by(Subscriber.email_key)
            .limit(200)
        )
    )
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
    series = _series(db, slug)
    _m, _s, html, _t, _sub = _rendered(settings, db, series, number, _subscriber_param(request))
    return HTMLResponse(
        html,
        headers={
            "content-security-policy": PREVIEW_CSP,
            "x-frame-options": "SAMEORIGIN",
            "cache-control": "no-store",
        },
    )


@protected.post("/series/{slug}/{number}/test", include_in_schema=False)
async def part_test_send(request: Request, slug: str, number: PartNumber) -> Response:
    form = await form_of(request)
    settings = settings_of(request)
    from newsletter.mail import render

    where = f"/admin/series/{slug}/{number}"
    with session_scope(settings.database_url) as db:
        series = _series(db, slug)
        parts = _parts(db, series)
        part = next((p for p in parts if p.number == number), None)
        if part is None:
            raise HTTPException(404, "no such part")
        article = render.Renderer(settings).article(series, part, len(parts))
    result = mailing.send_test(settings, str(form.get("to") or ""), article)
    if result.ok:
        return redirect(
            request, where, f"Test sent through {result.backend} to the address you gave."
        )
    return redirect(request, where, f"Test not sent: {result.detail}.", "error")


# --- subscribers ---------------------------------------------------------------------------


def _subscribers(
    request: Request, db: Session, q: str, status: str | None, number: int
) -> Response:
    if status not in SUBSCRIBER_STATUSES:
        status = None
    number = max(number, 1)
    found, total = roster.search(
        db, q, status=status, limit=PAGE_SIZE, offset=(number - 1) * PAGE_SIZE
    )
    return page(
        request,
        "admin/subscribers.html",
        {
            "nav": "subscribers",
            "q": q,
            "status": status or "",
            "statuses": SUBSCRIBER_STATUSES,
            "found": found,
            "total": total,
            "page": number,
            "pages": max((total + PAGE_SIZE - 1) // PAGE_SIZE, 1),
        },
    )


def _page_number(raw: object) -> int:
    text = str(raw or "1")
    return int(text) if text.isdigit() and len(text) < 7 else 1


@protected.get("/subscribers", response_class=HTMLResponse, include_in_schema=False)
def subscribers_page(request: Request, db: Db) -> Response:
    """Everyone, or one status; a search by name or address is a POST (no addresses in URLs)."""
    status = request.query_params.get("status") or None
    return _subscribers(request, db, "", status, _page_number(request.query_params.get("page")))


@protected.post("/subscribers/search", response_class=HTMLResponse, include_in_schema=False)
async def subscribers_search(request: Request) -> Response:
    form = await form_of(request)
    q = str(form.get("q") or "")[:200]
    status = str(form.get("status") or "") or None
    with session_scope(settings_of(request).database_url) as db:
        return _subscribers(request, db, q, status, _page_number(form.get("page")))


@protected.get("/subscribers/new", response_class=HTMLResponse, include_in_schema=False)
def subscriber_new(request: Request, db: Db) -> Response:
    return _new_form(request, db, {}, None)


def _new_form(request: Request, db: Session, values: dict[str, Any], error: str | None) -> Response:
    series = list(db.scalars(select(Series).order_by(Series.order, Series.id)))
    return page(
        request,
        "admin/subscriber_new.html",
        {"nav": "subscribers", "values": values, "error": error, "series": series},
        400 if error else 200,
    )


@protected.post("/subscribers", include_in_schema=False)
async def subscriber_add(request: Request) -> Response:
    form = await form_of(request)
    settings = settings_of(request)
    values = {
        "email": str(form.get("email") or ""),
        "name": str(form.get("name") or ""),
        "timezone": str(form.get("timezone") or ""),
        "series": [str(s) for s in form.getlist("series")],
        "consented": form.get("consented") == "yes",
    }
    try:
        sub_id = roster.add_subscriber(
            settings,
            email=values["email"],
            name=values["name"],
            timezone=values["timezone"],
            series=values["series"],
            confirmed=values["consented"],
        )
    except roster.RosterError as exc:
        with session_scope(settings.database_url) as db:
            return _new_form(request, db, values, str(exc))
    note = (
        "Added as active (consent given elsewhere)."
        if values["consented"]
        else "Added as pending; the confirmation email has gone out."
    )
    return redirect(request, f"/admin/subscribers/{sub_id}", note)


def _subscriber(db: Session, subscriber_id: int) -> Subscriber:
    sub = db.get(Subscriber, subscriber_id)
    if sub is None:
        raise HTTPException(404, "no such subscriber")
    return sub


@protected.get("/subscribers/{subscriber_id}", response_class=HTMLResponse, include_in_schema=False)
def subscriber_page(request: Request, subscriber_id: SubscriberId, db: Db) -> Response:
    sub = _subscriber(db, subscriber_id)
    queue = [
        {"e": e, "series": s, "part_title": roster.part_title(db, s.id, e.next_part)}
        for e, s in db.execute(
            select(Enrollment, Series)
            .join(Series, Series.id == Enrollment.series_id)
            .where(Enrollment.subscriber_id == sub.id)
            .order_by(Enrollment.position)
        )
    ]
    deliveries = list(
        db.execute(
            select(Delivery, Series)
            .join(Series, Series.id == Delivery.series_id)
            .where(Delivery.subscriber_id == sub.id)
            .order_by(Delivery.scheduled_for.desc(), Delivery.id.desc())
            .limit(200)
        )
    )
    events = list(
        db.scalars(
            select(ProviderEvent)
            .where(ProviderEvent.subscriber_id == sub.id)
            .order_by(ProviderEvent.occurred_at.desc())
            .limit(200)
        )
    )
    paused = sub.paused_until is not None and sub.paused_until > utcnow().date()
    next_item = next(
        (
            r
            for r in queue
            if isinstance(e := r["e"], Enrollment) and e.state == ENROLLED_ACTIVE and e.next_due_at
        ),
        None,
    )
    return page(
        request,
        "admin/subscriber.html",
        {
            "nav": "subscribers",
            "sub": sub,
            "queue": queue,
            "deliveries": deliveries,
            "events": events,
            "paused": paused,
            "next_item": next_item,
            "ACTIVE": ACTIVE,
            "PENDING": PENDING,
            "ENROLLED_ACTIVE": ENROLLED_ACTIVE,
            "QUEUED": QUEUED,
        },
    )


@protected.post("/subscribers/{subscriber_id}/unsubscribe", include_in_schema=False)
async def subscriber_unsubscribe(request: Request, subscriber_id: SubscriberId) -> Response:
    await form_of(request)
    settings = settings_of(request)
    with session_scope(settings.database_url) as db:
        roster.unsubscribe(settings, db, _subscriber(db, subscriber_id))
    return redirect(
        request, f"/admin/subscribers/{subscriber_id}", "Unsubscribed: nothing more goes to them."
    )


@protected.post("/subscribers/{subscriber_id}/resend", include_in_schema=False)
async def subscriber_resend(request: Request, subscriber_id: SubscriberId) -> Response:
    await form_of(request)
    settings = settings_of(request)
    with session_scope(settings.database_url) as db:
        sub = _subscriber(db, subscriber_id)
        pending = sub.status == PENDING
    if not pending:
        return redirect(
            request,
            f"/admin/subscribers/{subscriber_id}",
            "Only pending people get a confirmation email.",
            "error",
        )
    mailed = mailing.send_confirmations(settings, [subscriber_id])
    if mailed.halted is not None:
        said = f"Not sent: sending is halted ({mailed.halted})."
    else:
        said = (
            "Confirmation email sent again."
            if mailed.sent
            else "The confirmation email could not be sent."
        )
    return redirect(
        request, f"/admin/subscribers/{subscriber_id}", said, "ok" if mailed.sent else "error"
    )


@protected.post("/subscribers/{subscriber_id}/erase", include_in_schema=False)
async def subscriber_erase(request: Request, subscriber_id: SubscriberId) -> Response:
    form = await form_of(request)
    settings = settings_of(request)
    if str(form.get("confirm") or "").strip().lower() != "erase":
        return redirect(
            request,
            f"/admin/subscribers/{subscriber_id}",
            "Nothing erased: type ERASE in the box to confirm.",
            "error",
        )
    with session_scope(settings.database_url) as db:
        ids = roster.erase(settings, db, _subscriber(db, subscriber_id))
    roster.drop_from_queue(settings, ids)
    return redirect(
        request,
        "/admin/subscribers",
        "Erased. Their details are gone; the address is blocked from being imported again.",
    )


@protected.get("/subscribers/{subscriber_id}/export.json", include_in_schema=False)
def subscriber_export(request: Request, subscriber_id: SubscriberId, db: Db) -> Response:
    record = export.subscriber_record(db, _subscriber(db, subscriber_id))
    return Response(
        json.dumps(record, ensure_ascii=False, indent=2),
        media_type="application/json",
        headers={
            "content-disposition": f'attachment; filename="subscriber-{subscriber_id}.json"',
            "cache-control": "no-store",
        },
    )


# --- import and export ---------------------------------------------------------------------


UPLOAD_KEEP_SECONDS = 3600


def _imports_dir(settings: Settings) -> FilePath:
    """Where checked uploads wait for "import"; files left for an hour are deleted (personal data)."""
    path = settings.var_dir / "imports"
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    cutoff = time.time() - UPLOAD_KEEP_SECONDS
    for old in path.glob("*.csv"):
        try:
            if old.stat().st_mtime < cutoff:
                old.unlink()
        except FileNotFoundError:
            pass
    return path


@protected.get("/import", response_class=HTMLResponse, include_in_schema=False)
def import_page(request: Request) -> Response:
    return page(request, "admin/import.html", {"nav": "import", "report": None, "upload": None})


@protected.post("/import", include_in_schema=False)
async def import_upload(request: Request) -> Response:
    """Step 1: keep the file aside and show the dry-run report."""
    form = await form_of(request)
    settings = settings_of(request)
    upload = form.get("file")
    consented = form.get("consented") == "yes"
    if not isinstance(upload, UploadFile) or not upload.filename:
        return redirect(request, "/admin/import", "Choose a CSV file first.", "error")
    upload_id = secrets.token_urlsafe(18)
    path = _imports_dir(settings) / f"{upload_id}.csv"
    with path.open("wb") as out:
        while chunk := await upload.read(64 * 1024):
            out.write(chunk)
    # Stamped with our clock, as the clean-up reads it (the file system's may differ: NFS).
    stamp = time.time()
    os.utime(path, (stamp, stamp))
    from fastapi.concurrency import run_in_threadpool

    try:
        report = await run_in_threadpool(
            importing.import_csv, settings, path, dry_run=True, confirmed=consented
        )
    except roster.RosterError as exc:
        path.unlink(missing_ok=True)
        return redirect(request, "/admin/import", f"That file can't be imported: {exc}", "error")
    return page(
        request,
        "admin/import.html",
        {"nav": "import", "report": report, "upload": upload_id, "consented": consented},
    )


@protected.post("/import/{upload_id}", include_in_schema=False)
async def import_run(request: Request, upload_id: str) -> Response:
    """Step 2: import the file checked in step 1."""
    form = await form_of(request)
    settings = settings_of(request)
    if not _IMPORT_ID.match(upload_id):
        raise HTTPException(404, "no such upload")
    path = _imports_dir(settings) / f"{upload_id}.csv"
    if not path.exists():
        return redirect(
            request, "/admin/import", "That upload has gone; please choose the file again.", "error"
        )
    consented = form.get("consented") == "yes"
    from fastapi.concurrency import run_in_threadpool

    try:
        report = await run_in_threadpool(
            importing.import_csv, settings, path, dry_run=False, confirmed=consented
        )
    finally:
        path.unlink(missing_ok=True)
    return page(
        request,
        "admin/import.html",
        {"nav": "import", "report": report, "upload": None, "consented": consented},
    )


def _download(chunks: Iterator[str], media_type: str, extension: str) -> Response:
    """A streamed, uncached attachment named subscribers-<date>.<extension>."""
    stamp = utcnow().strftime("%Y-%m-%d")
    return StreamingResponse(
        (chunk.encode("utf-8") for chunk in chunks),
        media_type=media_type,
        headers={
            "content-disposition": f'attachment; filename="subscribers-{stamp}.{extension}"',
            "cache-control": "no-store",
        },
    )


@protected.get("/export.csv", include_in_schema=False)
def export_csv(request: Request) -> Response:
    return _download(export.export_csv(settings_of(request)), "text/csv; charset=utf-8", "csv")


@protected.get("/export.json", include_in_schema=False)
def export_json(request: Request) -> Response:
    return _download(export.export_json(settings_of(request)), "application/json", "json")


# Login first (no session needed), then everything else behind require_admin.
router = APIRouter()
router.include_router(public)
router.include_router(protected)
