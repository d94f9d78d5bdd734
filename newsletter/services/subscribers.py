"""Subscriber lifecycle: signup with consent, double opt-in, preferences, unsubscribe, resubscribe."""

from __future__ import annotations

import datetime as dt
import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from newsletter.core import tokens
from newsletter.core.config import Settings
from newsletter.mail import render
from newsletter.mail.message import Accepted, Message, Outcome, Recipient
from newsletter.store.models import (
    ACTIVE,
    BOUNCED,
    CADENCES,
    CANCELLED,
    ENROLLED_ACTIVE,
    FINISHED,
    LIVE,
    PENDING,
    QUEUED,
    SUPPRESSED_STATUSES,
    UNSUBSCRIBED,
    WEEKLY,
    Enrollment,
    Series,
    Subscriber,
    Suppression,
)

log = logging.getLogger(__name__)

# The version of the consent sentence shown next to the signup button (recorded with consent).
CONSENT_WORDING = "2026-11-signup-v1"
CONSENT_TEXT = (
    "I'd like to receive these articles by email. I can change my choices or "
    "unsubscribe at any time with one click."
)
NAME_MAX = 100
PAUSE_MAX_DAYS = 366

# Statuses from which a fresh signup may send a new confirmation email. Complaints (marked as
# spam) and erased addresses never get mail again from a web form.
_CAN_CONFIRM = (PENDING, UNSUBSCRIBED, BOUNCED)


class InvalidInput(ValueError):
    """Form input that can't be accepted; `errors` maps a field name to a sentence for the reader."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors


@dataclass
class SignupResult:
    """What a signup did. The web page is the same whatever happened (nothing is revealed)."""

    subscriber: Subscriber | None  # None: an erased address (suppressed), nothing stored
    created: bool
    send_confirmation: bool


@dataclass
class Preferences:
    """A complete set of choices from the preference centre."""

    series_slugs: list[str]
    cadence: str = WEEKLY
    paused_until: dt.date | None = None
    timezone: str = "UTC"
    name: str | None = None
    takes_new_series: bool = True


# --- validation ----------------------------------------------------------------------------


def normalise_email(raw: str) -> str:
    """The normalised address (IDN allowed, no DNS lookups); InvalidInput when malformed."""
    value = (raw or "").strip()
    if not value:
        raise InvalidInput({"email": "Please enter your email address."})
    try:
        result = validate_email(value, check_deliverability=False)
    except EmailNotValidError:
        raise InvalidInput(
            {"email": "That doesn't look like an email address. Could you check it?"}
        ) from None
    return str(result.normalized)


def email_key(email: str) -> str:
    """The unique, case-insensitive key of an address."""
    return email.lower()


def clean_name(raw: str | None) -> str | None:
    """A first name on one line, or None; InvalidInput when too long."""
    value = " ".join((raw or "").split())
    value = "".join(c for c in value if c.isprintable())
    if len(value) > NAME_MAX:
        raise InvalidInput({"name": f"Please keep the name under {NAME_MAX} characters."})
    return value or None


def valid_timezone(raw: str | None, default: str) -> str:
    """An IANA zone name; the default when empty; InvalidInput when unknown."""
    value = (raw or "").strip()
    if not value:
        return default
    if value not in zone_names():
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise InvalidInput(
                {"timezone": "Please choose a time zone from the list (for example Europe/London)."}
            ) from None
    return value


_ZONES: list[str] | None = None


def zone_names() -> list[str]:
    """Every IANA zone name, sorted (for the time zone menus)."""
    global _ZONES
    if _ZONES is None:
        _ZONES = sorted(z for z in available_timezones() if "/" in z or z == "UTC")
    return _ZONES


def live_series(session: Session) -> list[Series]:
    """Series a reader can choose, in queue order."""
    return list(
        session.scalars(
            select(Series).where(Series.state == LIVE).order_by(Series.order, Series.id)
        )
    )


def valid_series(session: Session, slugs: Sequence[str]) -> list[str]:
    """The chosen slugs in queue order; InvalidInput for an unknown one or none at all."""
    live = [s.slug for s in live_series(session)]
    chosen = list(dict.fromkeys(s.strip() for s in slugs if s.strip()))
    unknown = [s for s in chosen if s not in live]
    if unknown:
        raise InvalidInput(
            {"series": "One of the chosen series isn't available. Please choose again."}
        )
    if live and not chosen:
        raise InvalidInput({"series": "Please choose at least one series."})
    return [s for s in live if s in chosen]


def valid_pause(raw: str | dt.date | None, today: dt.date) -> dt.date | None:
    """A pause-until date in the future (at most a year ahead), or None for no pause."""
    if raw is None or raw == "":
        return None
    if isinstance(raw, dt.date):
        value = raw
    else:
        try:
            value = dt.date.fromisoformat(raw.strip())
        except ValueError:
            raise InvalidInput({"paused_until": "Please give the date as YYYY-MM-DD."}) from None
    if value <= today:
        return None
    if value > today + dt.timedelta(days=PAUSE_MAX_DAYS):
        raise InvalidInput({"paused_until": "A pause can last up to a year."})
    return value


# --- lookups -------------------------------------------------------------------------------


def by_public_id(session: Session, public_id: str) -> Subscriber | None:
    return session.scalar(select(Subscriber).where(Subscriber.public_id == public_id))


def by_email(session: Session, email: str) -> Subscriber | None:
    return session.scalar(select(Subscriber).where(Subscriber.email_key == email_key(email)))


def enrollments(session: Session, subscriber: Subscriber) -> list[Enrollment]:
    return list(
        session.scalars(
            select(Enrollment)
            .where(Enrollment.subscriber_id == subscriber.id)
            .order_by(Enrollment.position, Enrollment.id)
        )
    )


def lock(session: Session, subscriber: Subscriber) -> None:
    """Hold the subscriber's row until this transaction ends, and read it and its enrollments
    afresh (PostgreSQL; SQLite serialises writers anyway).

    A send in flight re-reads the subscriber FOR UPDATE after the provider call and then moves
    the enrollment on: with this lock taken first, a preference save or an unsubscribe either
    commits before that re-read (which then sees it) or starts after the send committed (and
    recomputes from the part that was just sent). Without it, a save landing between the two
    was overwritten: a pause or time zone ignored for the next part, or that part due at once.
    """
    session.refresh(subscriber, with_for_update=True)
    session.scalars(
        select(Enrollment)
        .where(Enrollment.subscriber_id == subscriber.id)
        .execution_options(populate_existing=True)
    ).all()


def chosen_series(session: Session, subscriber: Subscriber) -> list[str]:
    """Slugs the subscriber currently receives (or asked for, while pending)."""
    if subscriber.status == PENDING or not enrollments(session, subscriber):
        if subscriber.requested_series is not None:
            return list(subscriber.requested_series)
        return [s.slug for s in live_series(session)]
    rows = session.execute(
        select(Series.slug)
        .join(Enrollment, Enrollment.series_id == Series.id)
        .where(Enrollment.subscriber_id == subscriber.id, Enrollment.state != CANCELLED)
        .order_by(Enrollment.position)
    )
    return [slug for (slug,) in rows]


def is_suppressed(session: Session, email: str) -> bool:
    """True for an address that was erased on request: it is never stored or mailed again."""
    from newsletter.services.roster import email_hash

    digest = email_hash(email)
    return (
        session.scalar(select(Suppression.id).where(Suppression.email_hash == digest)) is not None
    )


# --- signup and confirmation ---------------------------------------------------------------


def subscribe(
    session: Session,
    email: str,
    name: str | None,
    timezone: str,
    series_slugs: Sequence[str] | None,
    ip: str | None,
    form: str,
    now: dt.datetime,
    *,
    default_timezone: str = "UTC",
) -> SignupResult:
    """Record a signup (pending until confirmed). A repeated signup creates no duplicate.

    `series_slugs=None` means every live series. Raises InvalidInput for bad input.
    """
    errors: dict[str, str] = {}
    address = clean = zone = None
    slugs: list[str] | None = None
    try:
        address = normalise_email(email)
    except InvalidInput as exc:
        errors.update(exc.errors)
    try:
        clean = clean_name(name)
    except InvalidInput as exc:
        errors.update(exc.errors)
    try:
        zone = valid_timezone(timezone, default_timezone)
    except InvalidInput as exc:
        errors.update(exc.errors)
    try:
        slugs = None if series_slugs is None else valid_series(session, series_slugs)
    except InvalidInput as exc:
        errors.update(exc.errors)
    if errors:
        raise InvalidInput(errors)
    assert address is not None and zone is not None

    existing = by_email(session, address)
    if existing is None and is_suppressed(session, address):
        return SignupResult(None, created=False, send_confirmation=False)
    if existing is None:
        subscriber = Subscriber(
            public_id=secrets.token_hex(16),
            email=address,
            email_key=email_key(address),
            name=clean,
            timezone=zone,
            status=PENDING,
            cadence=WEEKLY,
            takes_new_series=True,
            requested_series=slugs,
            created_at=now,
            updated_at=now,
        )
        _record_consent(subscriber, ip, form, now)
        try:
            with session.begin_nested():
                session.add(subscriber)
                session.flush()
        except IntegrityError:  # the same address signed up at the same moment: use that row
            existing = by_email(session, address)
            if existing is None:
                raise
        else:
            return SignupResult(subscriber, created=True, send_confirmation=True)

    subscriber = existing
    if subscriber.status not in _CAN_CONFIRM:
        # Active: nothing to do. Complained / erased: never mailed again from a form.
        return SignupResult(subscriber, created=False, send_confirmation=False)
    if subscriber.status == PENDING:
        # Not confirmed yet: the latest form wins (it is the same person asking again).
        if clean is not None:
            subscriber.name = clean
        subscriber.timezone = zone
        if series_slugs is not None:
            subscriber.requested_series = slugs
    _record_consent(subscriber, ip, form, now)
    session.flush()
    return SignupResult(subscriber, created=False, send_confirmation=True)


def _record_consent(subscriber: Subscriber, ip: str | None, form: str, now: dt.datetime) -> None:
    subscriber.consent_at = now
    subscriber.consent_method = "form"
    subscriber.consent_ip = (ip or "")[:64] or None
    subscriber.consent_form = form[:64]
    subscriber.consent_wording = CONSENT_WORDING


def confirm(session: Session, subscriber: Subscriber, now: dt.datetime) -> bool:
    """Double opt-in: make the subscriber active and enroll them. False when nothing changed.

    Also resubscribes someone who unsubscribed (they resume where they left off). Complained
    and erased addresses are never re-activated.
    """
    if subscriber.status == ACTIVE:
        return False
    if subscriber.status not in _CAN_CONFIRM:
        return False
    resuming = subscriber.status != PENDING
    subscriber.status = ACTIVE
    subscriber.unsubscribed_at = None
    if subscriber.confirmed_at is None or resuming:
        subscriber.confirmed_at = now
    session.flush()
    _enroll(session, subscriber, now)
    return True


def resubscribe(session: Session, subscriber: Subscriber, now: dt.datetime) -> bool:
    """Come back after unsubscribing (from a signed link): resumes at the next unsent part."""
    if subscriber.status not in (UNSUBSCRIBED, BOUNCED):
        return False
    return confirm(session, subscriber, now)


def _enroll(session: Session, subscriber: Subscriber, now: dt.datetime) -> None:
    """Enroll on confirmation; someone coming back keeps their places (and resumes there)."""
    from newsletter.engine import schedule

    slugs = subscriber.requested_series
    if enrollments(session, subscriber) and not subscriber.takes_new_series and slugs is None:
        slugs = []  # coming back: nothing new unless they take new series
    schedule.enroll(session, subscriber, now, series_slugs=slugs)
    subscriber.requested_series = None
    session.flush()


def first_article_text(session: Session, subscriber: Subscriber) -> str | None:
    """When the next article arrives, in the subscriber's zone, e.g. "Tuesday 3 March at 09:00
    (Europe/London)"; None when nothing is scheduled."""
    from newsletter.engine import schedule

    when = schedule.first_article_at(session, subscriber)
    if when is None:
        return None
    return format_when(when, subscriber.timezone)


def format_when(when: dt.datetime, zone: str) -> str:
    local = when.astimezone(ZoneInfo(zone))
    return f"{local:%A} {local.day} {local:%B %Y} at {local:%H:%M} ({zone})"


# --- preferences, unsubscribe --------------------------------------------------------------


def update_preferences(
    session: Session, subscriber: Subscriber, prefs: Preferences, now: dt.datetime
) -> None:
    """Apply a full set of choices. Enrollments of active subscribers change at once, by
    `schedule.reschedule`'s rule: a part already due stays due (the next tick sends it), a pause
    moves it to the first slot on or after the pause date, a time zone or cadence change moves
    only a part not yet due. Callers mirror `enrollment_ids` into Redis after the commit."""
    from newsletter.engine import schedule

    if prefs.cadence not in CADENCES:
        raise InvalidInput({"cadence": "Please choose weekly or every two weeks."})
    lock(session, subscriber)
    subscriber.name = prefs.name
    subscriber.timezone = prefs.timezone
    subscriber.cadence = prefs.cadence
    subscriber.paused_until = prefs.paused_until
    subscriber.takes_new_series = prefs.takes_new_series
    if subscriber.status == PENDING or (
        subscriber.status != ACTIVE and not enrollments(session, subscriber)
    ):
        subscriber.requested_series = list(prefs.series_slugs)
        session.flush()
        return
    wanted = set(prefs.series_slugs)
    rows = enrollments(session, subscriber)
    series_by_id = {s.id: s for s in session.scalars(select(Series))}
    known: set[str] = set()
    for row in rows:
        slug = series_by_id[row.series_id].slug
        known.add(slug)
        if slug in wanted and row.state == CANCELLED:
            row.state = QUEUED  # back in the queue; resumes at its next unsent part
            row.next_due_at = None
        elif slug not in wanted and row.state in (QUEUED, ENROLLED_ACTIVE):
            row.state = CANCELLED
            row.next_due_at = None
    session.flush()
    missing = [slug for slug in prefs.series_slugs if slug not in known]
    if subscriber.status == ACTIVE:
        if missing:
            schedule.enroll(session, subscriber, now, series_slugs=missing)
        schedule.reschedule(session, subscriber, now)
    session.flush()


def unsubscribe(session: Session, subscriber: Subscriber, now: dt.datetime) -> bool:
    """Stop everything at once (idempotent). True when this call unsubscribed them.

    Enrollments keep their place (a later resubscribe resumes there) but lose their due time,
    so nothing is due; callers then remove the queue entries (`sync_queue`).
    """
    lock(session, subscriber)
    if subscriber.status in SUPPRESSED_STATUSES:
        return False
    subscriber.status = UNSUBSCRIBED
    subscriber.unsubscribed_at = now
    for row in enrollments(session, subscriber):
        if row.state not in (FINISHED, CANCELLED):
            row.next_due_at = None
    session.flush()
    return True


def enrollment_ids(session: Session, subscriber: Subscriber) -> list[int]:
    """Ids of every enrollment of this subscriber (to mirror into Redis after a commit)."""
    return [row.id for row in enrollments(session, subscriber)]


def sync_queue(settings: Settings, ids: Sequence[int]) -> None:
    """Make Redis reflect the database for these enrollments (call after the commit)."""
    if not ids:
        return
    from newsletter.queue.dueset import RedisQueue
    from newsletter.store.db import session_scope

    with session_scope(settings.database_url) as session:
        RedisQueue(settings).sync_enrollments(session, ids)


# --- email ---------------------------------------------------------------------------------


def links(settings: Settings, subscriber: Subscriber) -> dict[str, str]:
    """The signed personal links of one subscriber."""
    secret = settings.secret
    return {
        purpose: tokens.link(settings.public_url, secret, purpose, subscriber.public_id)
        for purpose in ("confirm", "preferences", "unsubscribe")
    }


def _send(settings: Settings, subscriber: Subscriber, message: Message) -> Outcome:
    from newsletter.mail.backends import get_backend

    urls = links(settings, subscriber)
    values = render.personal_values(
        name=subscriber.name,
        unsubscribe_url=urls["unsubscribe"],
        preferences_url=urls["preferences"],
        confirm_url=urls["confirm"],
    )
    recipient = Recipient(
        delivery_id=f"{message.kind}-{secrets.token_hex(8)}",
        email=subscriber.email,
        name=subscriber.name,
        unsubscribe_url=urls["unsubscribe"],
        values=values,
    )
    outcome = get_backend(settings).send(message, [recipient])[0]
    if not isinstance(outcome, Accepted):
        log.warning("%s email not accepted: %s", message.kind, outcome)
    return outcome


def send_confirmation(settings: Settings, subscriber: Subscriber) -> Outcome:
    """Send the double opt-in email now (not at the next tick)."""
    return _send(settings, subscriber, render.Renderer(settings).confirmation())


def send_welcome(
    settings: Settings,
    subscriber: Subscriber,
    first_article: str | None,
    series_titles: Sequence[str] = (),
) -> Outcome:
    """Send the welcome email naming when the first article arrives."""
    text = first_article or "when the next series starts"
    message = render.Renderer(settings).welcome(text, tuple(series_titles))
    return _send(settings, subscriber, message)


def series_titles(session: Session, subscriber: Subscriber) -> list[str]:
    """Titles of the series this subscriber will receive, in their queue order."""
    titles = {s.slug: s.title for s in session.scalars(select(Series))}
    return [titles[slug] for slug in chosen_series(session, subscriber) if slug in titles]
