"""Public pages: the signup form and the double opt-in (confirm) link."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from starlette.background import BackgroundTask
from starlette.responses import Response

from newsletter.core import identity
from newsletter.core.vocabulary import ACTIVE, PENDING
from newsletter.services import mailing, people, signup
from newsletter.services.people import Person
from newsletter.store.db import session_scope
from newsletter.web import dates
from newsletter.web.csrf import verify_csrf
from newsletter.web.pages import render, settings_of
from newsletter.web.public.common import (
    LinkProblem,
    address_allowed,
    address_wait,
    cooldown_words,
    link_problem_page,
    next_article_text,
    read_public_id,
    send_confirmation_limited,
    send_welcome_or_log,
    subscriber_for,
    token_for,
    utc_now,
)
from newsletter.web.security import client_ip, hit_rate_limit

log = logging.getLogger(__name__)

router = APIRouter()

HONEYPOT = "website"  # hidden from people (CSS + aria-hidden); bots fill it in


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
    verify_csrf(request, csrf_token)
    hit_rate_limit(request, "subscribe")
    if website.strip():  # honeypot: look exactly like success, do nothing
        return render(request, "check_email.html", {})
    resend = form == "resend"

    def invalid(errors: dict[str, str]) -> Response:
        if resend:
            return render(request, "link_problem.html", {"errors": errors, "expired": False}, 400)
        values = {"email": email, "name": name, "timezone": timezone, "series": series or []}
        return _signup_page(request, values, errors, 400)

    return take_signup(
        request,
        email,
        name,
        timezone,
        None if resend else (series or []),
        "resend" if resend else "signup",
        done=lambda cooldown: render(request, "check_email.html", {"cooldown": cooldown}),
        invalid=invalid,
    )


def take_signup(
    request: Request,
    email: str,
    name: str,
    timezone: str,
    series: list[str] | None,
    method: str,
    *,
    done: Callable[[dict[str, str] | None], Response],
    invalid: Callable[[dict[str, str]], Response],
) -> Response:
    """Sign `email` up (double opt-in: a confirmation email after the response) once the caller
    has checked where the post came from (CSRF here, her listed origins for /signup); `done`
    makes the check-your-email page (given the cooldown's words, or None), `invalid` the page for bad input."""
    settings = settings_of(request)
    try:
        with session_scope(settings.database_url) as session:
            result = signup.subscribe(
                session,
                email,
                name or None,
                timezone,
                series,
                client_ip(request),
                method,
                utc_now(),
                secret=settings.secret,
                default_timezone=settings.default_timezone,
            )
            subscriber = result.person
            send = result.send_confirmation
            already = result.already_subscribed
            key = result.email_key
    except signup.InvalidInput as exc:
        return invalid(exc.errors)
    # Within the address's cooldown the page says so (the same read for every address, so it
    # tells nothing about whether the address is subscribed): no "fresh link" that never comes.
    wait = address_wait(request, settings, key) if key else 0
    zone = settings.default_timezone if timezone not in identity.zone_names() else timezone
    response = done(cooldown_words(wait, zone, utc_now()) if wait else None)
    if send and subscriber is not None:
        # Sent right after the response, so the page takes the same time whether or not an
        # email goes out (the timing must not tell whether an address is subscribed).
        # The per-address cooldown is checked there too, for the same reason.
        response.background = BackgroundTask(
            send_confirmation_limited, request, settings, subscriber
        )
    elif already and subscriber is not None:  # same page, same timing; the email tells them
        response.background = BackgroundTask(
            send_confirmation_limited,
            request,
            settings,
            subscriber,
            mailing.send_already_subscribed,
        )
    else:  # complained or erased: no email, but the same cooldown count (the same Redis work)
        response.background = BackgroundTask(address_allowed, request, settings, key)
    return response


# --- double opt-in -------------------------------------------------------------------------


@router.get("/confirm/{token}")
def confirm_page(request: Request, token: str) -> Response:
    settings = settings_of(request)
    try:
        public_id = read_public_id(request, "confirm", token)
        with session_scope(settings.database_url) as session:
            subscriber = subscriber_for(session, public_id)
            if subscriber.status == ACTIVE:
                return _confirmed_page(request, session, subscriber, already=True)
            if subscriber.status not in (PENDING, "unsubscribed", "bounced"):
                raise LinkProblem(404)
    except LinkProblem as problem:
        return link_problem_page(request, problem)
    return render(
        request,
        "confirm.html",
        {"token": token, "old_pause": _old_pause(subscriber)},
        no_store=True,
    )


def _old_pause(subscriber: Person) -> str | None:
    """The day a pause set before they left ends, when it is still ahead (asked on resubscribe)."""
    until = subscriber.paused_until
    if subscriber.status == PENDING or until is None or until <= utc_now().date():
        return None
    return dates.format_day(until)


def _confirmed_page(
    request: Request, session: Any, subscriber: Person, *, already: bool = False
) -> Response:
    return render(
        request,
        "confirmed.html",
        {
            "first_article": next_article_text(session, subscriber),
            "already": already,
            "preferences_token": token_for(request, "preferences", subscriber),
        },
        no_store=True,
    )


@router.post("/confirm/{token}")
def confirm(
    request: Request,
    token: str,
    csrf_token: Annotated[str | None, Form()] = None,
    pause: Annotated[str, Form()] = "keep",
) -> Response:
    settings = settings_of(request)
    verify_csrf(request, csrf_token)
    try:
        public_id = read_public_id(request, "confirm", token)
        with session_scope(settings.database_url) as session:
            subscriber = subscriber_for(session, public_id)
            if subscriber.status not in (PENDING, ACTIVE, "unsubscribed", "bounced"):
                raise LinkProblem(404)
            changed = signup.confirm(
                session, subscriber, utc_now(), ip=client_ip(request), keep_pause=pause != "end"
            )
            subscriber = people.again(session, subscriber)
            first = signup.first_article_text(session, subscriber)  # the welcome email's words
            shown = next_article_text(session, subscriber)  # the page's date style
            titles = signup.series_titles(session, subscriber)
            changes = people.enrollment_ids(session, subscriber)
    except LinkProblem as problem:
        return link_problem_page(request, problem)
    people.sync_queue(settings, changes)
    if changed:
        send_welcome_or_log(settings, subscriber, first, titles)
    return render(
        request,
        "confirmed.html",
        {
            "first_article": shown,
            "already": not changed,
            "preferences_token": token_for(request, "preferences", subscriber),
        },
        no_store=True,
    )
