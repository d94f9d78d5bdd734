"""Public pages: signup, double opt-in, preference centre, unsubscribe, archive, health check."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import JSONResponse
from markdown_it import MarkdownIt
from sqlalchemy import select, text
from starlette.background import BackgroundTask
from starlette.responses import Response

from newsletter.core import identity, tokens
from newsletter.core.config import Settings
from newsletter.services import mailing, people, preferences, signup
from newsletter.store.db import session_scope
from newsletter.store.models import (
    ACTIVE,
    CADENCES,
    PENDING,
    SUPPRESSED_STATUSES,
    Part,
    Series,
    Subscriber,
)
from newsletter.web.csrf import verify_csrf
from newsletter.web.pages import render, settings_of
from newsletter.web.security import client_ip, hit_rate_limit, redis_for

log = logging.getLogger(__name__)

router = APIRouter()

HONEYPOT = "website"  # hidden from people (CSS + aria-hidden); bots fill it in
_markdown = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": True})


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class LinkProblem(Exception):
    """A signed link is expired, tampered with, or points at nobody."""

    def __init__(self, status: int, expired: bool = False) -> None:
        super().__init__("bad link")
        self.status = status
        self.expired = expired


def _link_problem_page(request: Request, problem: LinkProblem) -> Response:
    return render(
        request,
        "link_problem.html",
        {"expired": problem.expired},
        problem.status,
        no_store=True,
    )


def _public_id(request: Request, purpose: str, token: str) -> str:
    try:
        return tokens.read_token(settings_of(request).secret, purpose, token)
    except tokens.TokenError as exc:
        raise LinkProblem(400, expired=exc.expired) from None


def _subscriber(session: Any, public_id: str) -> Subscriber:
    subscriber = people.by_public_id(session, public_id)
    if subscriber is None or subscriber.status == "erased":
        raise LinkProblem(404)
    return subscriber


def _token_for(request: Request, purpose: str, subscriber: Subscriber) -> str:
    return tokens.make_token(settings_of(request).secret, purpose, subscriber.public_id)


# --- signup --------------------------------------------------------------------------------


def _signup_page(
    request: Request,
    values: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    settings = settings_of(request)
    with session_scope(settings.database_url) as session:
        series = [
            {"slug": s.slug, "title": s.title, "description": s.description}
            for s in people.live_series(session)
        ]
    values = values or {}
    chosen = values.get("series")
    return render(
        request,
        "signup.html",
        {
            "series": series,
            "chosen": set(chosen) if chosen is not None else {s["slug"] for s in series},
            "zones": identity.zone_names(),
            "values": values,
            "timezone": values.get("timezone") or settings.default_timezone,
            "errors": errors or {},
            "consent_text": signup.CONSENT_TEXT,
            "honeypot": HONEYPOT,
        },
        status_code,
    )


@router.get("/")
def signup_form(request: Request) -> Response:
    return _signup_page(request)


@router.post("/subscribe")
def subscribe(
    request: Request,
    email: Annotated[str, Form()] = "",
    name: Annotated[str, Form()] = "",
    timezone: Annotated[str, Form()] = "",
    series: Annotated[list[str] | None, Form()] = None,
    form: Annotated[str, Form()] = "signup",
    website: Annotated[str, Form()] = "",
    csrf_token: Annotated[str | None, Form()] = None,
) -> Response:
    settings = settings_of(request)
    verify_csrf(request, csrf_token)
    hit_rate_limit(request, "subscribe")
    if website.strip():  # honeypot: look exactly like success, do nothing
        return render(request, "check_email.html", {})
    resend = form == "resend"
    try:
        with session_scope(settings.database_url) as session:
            result = signup.subscribe(
                session,
                email,
                name or None,
                timezone,
                None if resend else (series or []),
                client_ip(request),
                "resend" if resend else "signup",
                _now(),
                default_timezone=settings.default_timezone,
            )
            subscriber = result.subscriber
            send = result.send_confirmation
    except signup.InvalidInput as exc:
        if resend:
            return render(
                request, "link_problem.html", {"errors": exc.errors, "expired": False}, 400
            )
        values = {"email": email, "name": name, "timezone": timezone, "series": series or []}
        return _signup_page(request, values, exc.errors, 400)
    response = render(request, "check_email.html", {})
    if send and subscriber is not None:
        # Sent right after the response, so the page takes the same time whether or not an
        # email goes out (the timing must not tell whether an address is subscribed).
        response.background = BackgroundTask(_send_confirmation, settings, subscriber)
    return response


def _send_confirmation(settings: Settings, subscriber: Subscriber) -> None:
    try:
        mailing.send_confirmation(settings, subscriber)
    except Exception:  # the page was the same either way; the operator sees the log
        log.exception("confirmation email could not be sent")


# --- double opt-in -------------------------------------------------------------------------


@router.get("/confirm/{token}")
def confirm_page(request: Request, token: str) -> Response:
    settings = settings_of(request)
    try:
        public_id = _public_id(request, "confirm", token)
        with session_scope(settings.database_url) as session:
            subscriber = _subscriber(session, public_id)
            if subscriber.status == ACTIVE:
                return _confirmed_page(request, session, subscriber, already=True)
            if subscriber.status not in (PENDING, "unsubscribed", "bounced"):
                raise LinkProblem(404)
    except LinkProblem as problem:
        return _link_problem_page(request, problem)
    return render(request, "confirm.html", {"token": token}, no_store=True)


def _confirmed_page(
    request: Request, session: Any, subscriber: Subscriber, *, already: bool = False
) -> Response:
    first = signup.first_article_text(session, subscriber)
    return render(
        request,
        "confirmed.html",
        {
            "first_article": first,
            "already": already,
            "preferences_token": _token_for(request, "preferences", subscriber),
        },
        no_store=True,
    )


@router.post("/confirm/{token}")
def confirm(
    request: Request, token: str, csrf_token: Annotated[str | None, Form()] = None
) -> Response:
    settings = settings_of(request)
    verify_csrf(request, csrf_token)
    try:
        public_id = _public_id(request, "confirm", token)
        with session_scope(settings.database_url) as session:
            subscriber = _subscriber(session, public_id)
            if subscriber.status not in (PENDING, ACTIVE, "unsubscribed", "bounced"):
                raise LinkProblem(404)
            changed = signup.confirm(session, subscriber, _now())
            first = signup.first_article_text(session, subscriber)
            titles = signup.series_titles(session, subscriber)
            changes = people.enrollment_ids(session, subscriber)
    except LinkProblem as problem:
        return _link_problem_page(request, problem)
    people.sync_queue(settings, changes)
    if changed:
        try:
            mailing.send_welcome(settings, subscriber, first, titles)
        except Exception:
            log.exception("welcome email could not be sent")
    return render(
        request,
        "confirmed.html",
        {
            "first_article": first,
            "already": not changed,
            "preferences_token": _token_for(request, "preferences", subscriber),
        },
        no_store=True,
    )


# --- preference centre ---------------------------------------------------------------------


def _preferences_page(
    request: Request,
    token: str,
    session: Any,
    subscriber: Subscriber,
    *,
    errors: dict[str, str] | None = None,
    saved: bool = False,
    values: dict[str, Any] | None = None,
    status_code: int = 200,
) -> Response:
    series = [
        {"slug": s.slug, "title": s.title, "description": s.description}
        for s in people.live_series(session)
    ]
    current = {
        "name": subscriber.name or "",
        "timezone": subscriber.timezone,
        "cadence": subscriber.cadence,
        "paused_until": subscriber.paused_until.isoformat() if subscriber.paused_until else "",
        "series": signup.chosen_series(session, subscriber),
        "takes_new_series": subscriber.takes_new_series,
    }
    current.update(values or {})
    next_article = (
        signup.first_article_text(session, subscriber) if subscriber.status == ACTIVE else None
    )
    return render(
        request,
        "preferences.html",
        {
            "token": token,
            "email": subscriber.email,
            "status": subscriber.status,
            "suppressed": subscriber.status in SUPPRESSED_STATUSES,
            "series": series,
            "values": current,
            "zones": identity.zone_names(),
            "errors": errors or {},
            "saved": saved,
            "next_article": next_article,
            "unsubscribe_token": _token_for(request, "unsubscribe", subscriber),
            "today": _now().date().isoformat(),
        },
        status_code,
        no_store=True,
    )


@router.get("/preferences/{token}")
def preferences_page(request: Request, token: str) -> Response:
    settings = settings_of(request)
    try:
        public_id = _public_id(request, "preferences", token)
        with session_scope(settings.database_url) as session:
            subscriber = _subscriber(session, public_id)
            return _preferences_page(request, token, session, subscriber)
    except LinkProblem as problem:
        return _link_problem_page(request, problem)


@router.post("/preferences/{token}")
def preferences_save(
    request: Request,
    token: str,
    csrf_token: Annotated[str | None, Form()] = None,
    action: Annotated[str, Form()] = "save",
    name: Annotated[str, Form()] = "",
    timezone: Annotated[str, Form()] = "",
    cadence: Annotated[str, Form()] = "weekly",
    paused_until: Annotated[str, Form()] = "",
    series: Annotated[list[str] | None, Form()] = None,
    takes_new_series: Annotated[str, Form()] = "",
) -> Response:
    settings = settings_of(request)
    verify_csrf(request, csrf_token)
    now = _now()
    try:
        public_id = _public_id(request, "preferences", token)
        with session_scope(settings.database_url) as session:
            subscriber = _subscriber(session, public_id)
            if action == "resubscribe":
                changed = signup.resubscribe(session, subscriber, now)
                first = signup.first_article_text(session, subscriber)
                titles = signup.series_titles(session, subscriber)
                changes = people.enrollment_ids(session, subscriber)
                response = _preferences_page(request, token, session, subscriber, saved=changed)
            else:
                errors: dict[str, str] = {}
                prefs = preferences.Preferences(series_slugs=[])
                try:
                    prefs = _read_preferences(
                        session,
                        subscriber,
                        name,
                        timezone,
                        cadence,
                        paused_until,
                        series or [],
                        takes_new_series,
                        now,
                        settings.default_timezone,
                    )
                    preferences.update_preferences(session, subscriber, prefs, now)
                except signup.InvalidInput as exc:
                    errors = exc.errors
                if errors:
                    session.rollback()
                    values = {
                        "name": name,
                        "timezone": timezone,
                        "cadence": cadence,
                        "paused_until": paused_until,
                        "series": series or [],
                        "takes_new_series": bool(takes_new_series),
                    }
                    return _preferences_page(
                        request,
                        token,
                        session,
                        subscriber,
                        errors=errors,
                        values=values,
                        status_code=400,
                    )
                changed, first, titles = False, None, []
                changes = people.enrollment_ids(session, subscriber)
                response = _preferences_page(request, token, session, subscriber, saved=True)
    except LinkProblem as problem:
        return _link_problem_page(request, problem)
    people.sync_queue(settings, changes)
    if action == "resubscribe" and changed:
        try:
            mailing.send_welcome(settings, subscriber, first, titles)
        except Exception:
            log.exception("welcome email could not be sent")
    return response


def _read_preferences(
    session: Any,
    subscriber: Subscriber,
    name: str,
    timezone: str,
    cadence: str,
    paused_until: str,
    series: list[str],
    takes_new_series: str,
    now: dt.datetime,
    default_timezone: str,
) -> preferences.Preferences:
    errors: dict[str, str] = {}
    result: dict[str, Any] = {}
    checks = {
        "name": lambda: signup.clean_name(name),
        "timezone": lambda: signup.valid_timezone(
            timezone, subscriber.timezone or default_timezone
        ),
        "paused_until": lambda: preferences.valid_pause(paused_until, now.date()),
        "series": lambda: signup.valid_series(session, series),
    }
    for key, check in checks.items():
        try:
            result[key] = check()
        except signup.InvalidInput as exc:
            errors.update(exc.errors)
    if cadence not in CADENCES:
        errors["cadence"] = "Please choose weekly or every two weeks."
    if errors:
        raise signup.InvalidInput(errors)
    return preferences.Preferences(
        series_slugs=result["series"],
        cadence=cadence,
        paused_until=result["paused_until"],
        timezone=result["timezone"],
        name=result["name"],
        takes_new_series=bool(takes_new_series),
    )


# --- unsubscribe ---------------------------------------------------------------------------


@router.get("/unsubscribe/{token}")
def unsubscribe_page(request: Request, token: str) -> Response:
    settings = settings_of(request)
    try:
        public_id = _public_id(request, "unsubscribe", token)
        with session_scope(settings.database_url) as session:
            subscriber = _subscriber(session, public_id)
            context = {
                "token": token,
                "email": subscriber.email,
                "already": subscriber.status in SUPPRESSED_STATUSES,
                "preferences_token": _token_for(request, "preferences", subscriber),
            }
    except LinkProblem as problem:
        return _link_problem_page(request, problem)
    return render(request, "unsubscribe.html", context, no_store=True)


@router.post("/unsubscribe/{token}")
def unsubscribe(request: Request, token: str) -> Response:
    """One-click (RFC 8058) and the page's button: only ever unsubscribes, so no CSRF token.

    The body (`List-Unsubscribe=One-Click`, the page's form, or nothing) is not needed.
    """
    settings = settings_of(request)
    try:
        public_id = _public_id(request, "unsubscribe", token)
        with session_scope(settings.database_url) as session:
            subscriber = _subscriber(session, public_id)
            preferences.unsubscribe(session, subscriber, _now())
            changes = people.enrollment_ids(session, subscriber)
            preferences_token = _token_for(request, "preferences", subscriber)
    except LinkProblem as problem:
        return _link_problem_page(request, problem)
    people.sync_queue(settings, changes)
    return render(
        request, "unsubscribed.html", {"preferences_token": preferences_token}, no_store=True
    )


# --- archive -------------------------------------------------------------------------------


@router.get("/archive")
def archive(request: Request) -> Response:
    settings = settings_of(request)
    with session_scope(settings.database_url) as session:
        rows = session.execute(
            select(Series, Part)
            .join(Part, Part.series_id == Series.id)
            .where(Part.first_sent_at.is_not(None))
            .order_by(Series.order, Series.id, Part.number)
        ).all()
        groups: list[dict[str, Any]] = []
        for series, part in rows:
            if not groups or groups[-1]["slug"] != series.slug:
                groups.append(
                    {
                        "slug": series.slug,
                        "title": series.title,
                        "description": series.description,
                        "parts": [],
                    }
                )
            groups[-1]["parts"].append(
                {"number": part.number, "title": part.title, "summary": part.summary}
            )
    return render(request, "archive.html", {"groups": groups})


@router.get("/archive/{series}/{part}")
def archive_part(request: Request, series: str, part: str) -> Response:
    settings = settings_of(request)
    if not part.isdigit() or len(part) > 6:
        return render(request, "error.html", _not_found(), 404)
    with session_scope(settings.database_url) as session:
        row = session.execute(
            select(Series, Part)
            .join(Part, Part.series_id == Series.id)
            .where(Series.slug == series, Part.number == int(part))
            .where(Part.first_sent_at.is_not(None))
        ).first()
        if row is None:
            return render(request, "error.html", _not_found(), 404)
        s, p = row
        numbers = list(
            session.scalars(
                select(Part.number)
                .where(Part.series_id == s.id, Part.first_sent_at.is_not(None))
                .order_by(Part.number)
            )
        )
        context = {
            "series": {"slug": s.slug, "title": s.title},
            "part": {"number": p.number, "title": p.title, "summary": p.summary},
            "body_html": _markdown.render(p.body_md),
            "previous": max((n for n in numbers if n < p.number), default=None),
            "next": min((n for n in numbers if n > p.number), default=None),
        }
    return render(request, "archive_part.html", context)


def _not_found() -> dict[str, Any]:
    return {
        "title": "We couldn't find that article",
        "text": "It may not have been published yet. The archive lists every article so far.",
        "status": 404,
        "archive_link": True,
    }


# --- health --------------------------------------------------------------------------------


@router.get("/healthz")
def healthz(request: Request) -> JSONResponse:
    settings = settings_of(request)
    checks: dict[str, str] = {}
    try:
        with session_scope(settings.database_url) as session:
            session.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = f"error: {type(exc).__name__}"
    try:
        redis_for(request).ping()
        checks["redis"] = "ok"
    except Exception as exc:
        checks["redis"] = f"error: {type(exc).__name__}"
    healthy = all(v == "ok" for v in checks.values())
    return JSONResponse(
        {"status": "ok" if healthy else "error", **checks}, status_code=200 if healthy else 503
    )
