"""Shared by the public pages: signed-link reading, the link-problem page, the clock, the welcome."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from typing import Any

import redis
from fastapi import Request
from starlette.responses import Response

from newsletter.core import tokens
from newsletter.core.config import Settings
from newsletter.services import calendar, mailing, people, signup
from newsletter.services.people import Person
from newsletter.web import dates, zones
from newsletter.web.pages import render, settings_of
from newsletter.web.security import redis_for

log = logging.getLogger(__name__)


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class LinkProblem(Exception):
    """A signed link is expired, tampered with, or points at nobody."""

    def __init__(self, status: int, expired: bool = False) -> None:
        super().__init__("bad link")
        self.status = status
        self.expired = expired


def link_problem_page(request: Request, problem: LinkProblem) -> Response:
    return render(
        request,
        "link_problem.html",
        {"expired": problem.expired},
        problem.status,
        no_store=True,
    )


def mask_email(email: str) -> str:
    """The address as link pages show it: `a•••@example.org`.

    Preference and unsubscribe links ride in every article, so whoever gets a forwarded one
    must not learn the reader's address from the page; the reader still recognises it.
    """
    local, _, domain = email.rpartition("@")
    if not local:  # not an address: show nothing of it
        return "•••"
    return f"{local[0]}•••@{domain}"


def read_public_id(request: Request, purpose: str, token: str) -> str:
    try:
        return tokens.read_token(settings_of(request).secret, purpose, token)
    except tokens.TokenError as exc:
        raise LinkProblem(400, expired=exc.expired) from None


def subscriber_for(session: Any, public_id: str) -> Person:
    """The reader the link names (a snapshot: pages hold values, never rows); 404 for nobody."""
    subscriber = people.reader(session, public_id)
    if subscriber is None:
        raise LinkProblem(404)
    return subscriber


def token_for(request: Request, purpose: str, subscriber: Person) -> str:
    return tokens.make_token(settings_of(request).secret, purpose, subscriber.public_id)


def send_welcome_or_log(
    settings: Settings, subscriber: Person, first: str | None, titles: list[str]
) -> None:
    """Send the welcome email; a failure is logged, never shown (the change is saved)."""
    try:
        mailing.send_welcome(settings, subscriber, first, titles)
    except Exception:
        log.exception("welcome email could not be sent")


def address_allowed(request: Request, settings: Settings, key: str) -> bool:
    """Whether one more email may go to this address now (`key`: its email key, prefixed by
    the purpose where it has a counter of its own): signup.confirmation_allowed's per-address
    cooldown and daily limit, failing closed when Redis can't be reached."""
    try:
        return signup.confirmation_allowed(
            redis_for(request), settings.secret, settings.redis_prefix, key
        )
    except (redis.RedisError, OSError, RuntimeError):  # e.g. the embedded server didn't start
        return False


def address_wait(request: Request, settings: Settings, key: str) -> int:
    """Seconds before this address may have another confirmation email (0: now, or unknown)."""
    try:
        return signup.confirmation_wait(
            redis_for(request), settings.secret, settings.redis_prefix, key
        )
    except (redis.RedisError, OSError, RuntimeError):
        return 0


def cooldown_words(wait: int, zone: str, now: dt.datetime) -> dict[str, str]:
    """ "a link was asked for at 10:42; another at 10:52, in 8 minutes" for the check-email page."""
    asked = now - dt.timedelta(seconds=signup.COOLDOWN_SECONDS - wait)
    minutes = max(1, -(-wait // 60))
    return {
        "asked_at": dates.format_clock(asked, zone),
        "again_at": dates.format_clock(now + dt.timedelta(seconds=wait), zone),
        "minutes": f"{minutes} minute{'' if minutes == 1 else 's'}",
        "zone": zones.label(zone),
    }


def send_confirmation_limited(
    request: Request,
    settings: Settings,
    subscriber: Person,
    send: Callable[[Settings, Person], object] | None = None,
) -> None:
    """Send a confirmation email (or `send`: the already-subscribed note) unless this address
    had one lately (the per-address cooldown, signup.confirmation_allowed). Runs after the
    response: the page looks and takes the same either way. Failures are logged, never shown."""
    if not address_allowed(request, settings, subscriber.email_key):
        log.info("confirmation email not sent: within the per-address limit or Redis down")
        return
    try:
        (send or mailing.send_confirmation)(settings, subscriber)
    except Exception:  # the page was the same either way; the operator sees the log
        log.exception("confirmation email could not be sent")


def next_article_text(session: Any, subscriber: Person) -> str | None:
    """When their next article arrives, in the one date style of the pages, in their zone."""
    when = calendar.next_date(session, subscriber, utc_now())
    return None if when is None else dates.format_moment(when, subscriber.timezone)
