"""Public pages: the preference centre and unsubscribe (one click or the page's button)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from starlette.background import BackgroundTask
from starlette.responses import Response

from newsletter.core import identity
from newsletter.core.vocabulary import (
    ACTIVE,
    BOUNCED,
    CADENCES,
    SUPPRESSED_STATUSES,
    UNSUBSCRIBED,
)
from newsletter.services import calendar, people, preferences, signup
from newsletter.services.people import Person
from newsletter.store.db import session_scope
from newsletter.web.csrf import verify_csrf
from newsletter.web.pages import render, settings_of
from newsletter.web.public.common import (
    LinkProblem,
    link_problem_page,
    mask_email,
    next_article_text,
    read_public_id,
    send_confirmation_limited,
    send_welcome_or_log,
    subscriber_for,
    token_for,
    utc_now,
)

router = APIRouter()


def _preferences_page(
    request: Request,
    token: str,
    session: Any,
    subscriber: Person,
    *,
    errors: dict[str, str] | None = None,
    saved: bool = False,
    confirmation_sent: bool = False,
    values: dict[str, Any] | None = None,
    status_code: int = 200,
) -> Response:
    series = [
        {"slug": s.slug, "title": s.title, "description": s.description}
        for s in people.live_series(session)
    ]
    now = utc_now()
    pause_running = calendar.pause_running(subscriber, now)  # on the reader's own calendar
    current = {
        "name": subscriber.name or "",
        "timezone": subscriber.timezone,
        "cadence": subscriber.cadence,
        # a pause that has ended is not offered again (a past date is refused on save)
        "paused_until": subscriber.paused_until.isoformat()
        if subscriber.paused_until and pause_running
        else "",
        "series": signup.chosen_series(session, subscriber),
        "takes_new_series": subscriber.takes_new_series,
    }
    current.update(values or {})
    next_article = next_article_text(session, subscriber) if subscriber.status == ACTIVE else None
    return render(
        request,
        "preferences.html",
        {
            "token": token,
            "email": mask_email(subscriber.email),
            "status": subscriber.status,
            "suppressed": subscriber.status in SUPPRESSED_STATUSES,
            "series": series,
            "values": current,
            "zones": identity.zone_names(),
            "errors": errors or {},
            "saved": saved,
            "confirmation_sent": confirmation_sent,
            "next_article": next_article,
            "unsubscribe_token": token_for(request, "unsubscribe", subscriber),
            "today": calendar.local_today(subscriber, now).isoformat(),
            # the saved pause, not what a refused form held
            "paused_until": subscriber.paused_until if pause_running else None,
        },
        status_code,
        no_store=True,
    )


@router.get("/preferences/{token}")
def preferences_page(request: Request, token: str) -> Response:
    settings = settings_of(request)
    try:
        public_id = read_public_id(request, "preferences", token)
        with session_scope(settings.database_url) as session:
            subscriber = subscriber_for(session, public_id)
            return _preferences_page(request, token, session, subscriber)
    except LinkProblem as problem:
        return link_problem_page(request, problem)


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
    now = utc_now()
    form = _PostedPreferences(name, timezone, cadence, paused_until, series or [], takes_new_series)
    try:
        public_id = read_public_id(request, "preferences", token)
        with session_scope(settings.database_url) as session:
            subscriber = subscriber_for(session, public_id)
            if action == "resubscribe":
                outcome = _resubscribe(request, token, session, subscriber)
            else:
                outcome = _save(
                    request, token, session, subscriber, form, now, settings.default_timezone
                )
    except LinkProblem as problem:
        return link_problem_page(request, problem)
    if outcome.changes is None:  # the form had errors: nothing was saved
        return outcome.response
    people.sync_queue(settings, outcome.changes)
    if outcome.welcome is not None:
        first, titles = outcome.welcome
        send_welcome_or_log(settings, subscriber, first, titles)
    if outcome.confirm:
        outcome.response.background = BackgroundTask(
            send_confirmation_limited, request, settings, subscriber
        )
    return outcome.response


@dataclass
class _PostedPreferences:
    """The preference form's fields as posted (shown again, unchanged, when one is wrong)."""

    name: str
    timezone: str
    cadence: str
    paused_until: str
    series: list[str]
    takes_new_series: str

    def values(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "timezone": self.timezone,
            "cadence": self.cadence,
            "paused_until": self.paused_until,
            "series": self.series,
            "takes_new_series": bool(self.takes_new_series),
        }


@dataclass
class _Outcome:
    """What a preference post did: the page, the enrollments to mirror, a welcome to send."""

    response: Response
    changes: list[int] | None  # None: nothing saved (the form had errors)
    welcome: tuple[str | None, list[str]] | None = None  # (first article, series titles)
    confirm: bool = False  # send a fresh confirmation email after the response


def _resubscribe(request: Request, token: str, session: Any, subscriber: Person) -> _Outcome:
    """Coming back from a preference link is a fresh double opt-in: the link rides in every
    article, so whoever holds a forwarded one must not be able to switch the reader back on.
    Nothing changes here; a confirmation email goes to the address (within its cooldown) and
    its link resubscribes them (signup.confirm records the new consent at that click)."""
    asked = subscriber.status in (UNSUBSCRIBED, BOUNCED)
    response = _preferences_page(request, token, session, subscriber, confirmation_sent=asked)
    return _Outcome(response, [], confirm=asked)


def _save(
    request: Request,
    token: str,
    session: Any,
    subscriber: Person,
    form: _PostedPreferences,
    now: dt.datetime,
    default_timezone: str,
) -> _Outcome:
    try:
        prefs = _read_preferences(
            session,
            subscriber,
            form.name,
            form.timezone,
            form.cadence,
            form.paused_until,
            form.series,
            form.takes_new_series,
            now,
            default_timezone,
        )
        preferences.update_preferences(session, subscriber, prefs, now)
    except signup.InvalidInput as exc:
        session.rollback()
        response = _preferences_page(
            request,
            token,
            session,
            subscriber,
            errors=exc.errors,
            values=form.values(),
            status_code=400,
        )
        return _Outcome(response, None)
    changes = people.enrollment_ids(session, subscriber)
    saved = people.again(session, subscriber)
    return _Outcome(_preferences_page(request, token, session, saved, saved=True), changes)


def _read_preferences(
    session: Any,
    subscriber: Person,
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
        "paused_until": lambda: preferences.valid_pause(
            paused_until, calendar.local_today(subscriber, now)
        ),
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
        public_id = read_public_id(request, "unsubscribe", token)
        with session_scope(settings.database_url) as session:
            subscriber = subscriber_for(session, public_id)
            context = {
                "token": token,
                "email": mask_email(subscriber.email),
                "already": subscriber.status in SUPPRESSED_STATUSES,
                "preferences_token": token_for(request, "preferences", subscriber),
            }
    except LinkProblem as problem:
        return link_problem_page(request, problem)
    return render(request, "unsubscribe.html", context, no_store=True)


@router.post("/unsubscribe/{token}")
def unsubscribe(request: Request, token: str) -> Response:
    """One-click (RFC 8058) and the page's button: only ever unsubscribes, so no CSRF token.

    The body (`List-Unsubscribe=One-Click`, the page's form, or nothing) is not needed.
    """
    settings = settings_of(request)
    try:
        public_id = read_public_id(request, "unsubscribe", token)
        with session_scope(settings.database_url) as session:
            subscriber = subscriber_for(session, public_id)
            preferences.unsubscribe(session, subscriber, utc_now())
            changes = people.enrollment_ids(session, subscriber)
            rotated = people.again(session, subscriber)  # a new public id: the old links end
            preferences_token = token_for(request, "preferences", rotated)
    except LinkProblem as problem:
        return link_problem_page(request, problem)
    people.sync_queue(settings, changes)
    return render(
        request, "unsubscribed.html", {"preferences_token": preferences_token}, no_store=True
    )
