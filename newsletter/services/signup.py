"""Signup with recorded consent, double opt-in and coming back, and the form rules they share."""

from __future__ import annotations

import datetime as dt
import hmac
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import redis
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from newsletter.core import identity, timing
from newsletter.engine import schedule
from newsletter.services import calendar
from newsletter.services.auth import count_hit
from newsletter.services.people import (
    Person,
    Someone,
    by_email,
    enrollments,
    is_suppressed,
    live_series,
    person_of,
    row_of,
)
from newsletter.store import webhooks_out
from newsletter.store.models import (
    ACTIVE,
    BOUNCED,
    CANCELLED,
    PENDING,
    SERIES_KIND,
    UNSUBSCRIBED,
    WEEKLY,
    Enrollment,
    Series,
    Subscriber,
)

# The version of the consent sentence shown next to the signup button (recorded with consent).
CONSENT_WORDING = "2026-11-signup-v1"
CONSENT_TEXT = (
    "I'd like to receive these articles by email. I can change my choices or "
    "unsubscribe at any time with one click."
)

log = logging.getLogger(__name__)

# Confirmation emails per address: one per COOLDOWN_SECONDS, at most DAILY_LIMIT a day (counted
# in Redis under an HMAC of the address, never the address itself).
COOLDOWN_SECONDS = 600
DAILY_LIMIT = 3
_DAY_SECONDS = 86_400
_REDIS_DOWN = (redis.RedisError, OSError, RuntimeError)  # RuntimeError: embedded didn't start

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
    # an active reader signed up again: they get a note by email (the page says nothing)
    already_subscribed: bool = False
    email_key: str = ""  # the address's key: its cooldown is counted whatever happened

    @property
    def person(self) -> Person | None:
        """The subscriber as the signup page may hold them (a snapshot, not the row)."""
        return None if self.subscriber is None else person_of(self.subscriber)


# --- the identity rules (core.identity) in the reader's words ------------------------------


def normalise_email(raw: str | None) -> str:
    """The stored form of an address (identity.normalise_email); InvalidInput when malformed."""
    if not (raw or "").strip():
        raise InvalidInput({"email": "Please enter your email address."})
    try:
        return identity.normalise_email(raw)
    except ValueError:
        raise InvalidInput(
            {"email": "That doesn't look like an email address. Could you check it?"}
        ) from None


def clean_name(raw: str | None) -> str | None:
    """A name on one line, or None (identity.clean_name); InvalidInput otherwise."""
    try:
        return identity.clean_name(raw)
    except ValueError as exc:
        if "control" in str(exc):
            raise InvalidInput(
                {"name": "Please write the name without special control characters."}
            ) from None
        raise InvalidInput(
            {"name": f"Please keep the name under {identity.NAME_MAX} characters."}
        ) from None


def valid_timezone(raw: str | None, default: str) -> str:
    """An IANA zone name; the default when empty (identity.check_zone); InvalidInput otherwise."""
    try:
        return identity.check_zone(raw, default)
    except ValueError:
        raise InvalidInput(
            {"timezone": "Please choose a time zone from the list (for example Europe/London)."}
        ) from None


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
    secret: str,
    default_timezone: str = "UTC",
) -> SignupResult:
    """Record a signup (pending until confirmed). A repeated signup creates no duplicate.

    `series_slugs=None` means every live series; `secret` keys the erased-address lookup.
    Raises InvalidInput for bad input.
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

    # The same work for every address, new, known or erased (the time a signup takes must not
    # tell whether an address is on the list): one read of the subscriber, one suppression
    # lookup (its HMAC included), the new row built, and one write under a savepoint: the
    # INSERT for a new address, else a no-op UPDATE of the address's row (none when erased).
    key = identity.email_key(address)
    webhooks_out.listening(session, webhooks_out.SUBSCRIBED)  # read for every address alike
    existing = by_email(session, address)
    suppressed = is_suppressed(session, secret, address)
    subscriber = Subscriber(
        public_id=identity.new_public_id(),
        email=address,
        email_key=key,
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
    if existing is not None or suppressed:
        _same_write(session, key)
        if existing is None:
            return SignupResult(None, created=False, send_confirmation=False, email_key=key)
    else:
        try:
            with session.begin_nested():
                session.add(subscriber)
                session.flush()
        except IntegrityError:  # the same address signed up at the same moment: use that row
            existing = by_email(session, address)
            if existing is None:
                raise
        else:
            webhooks_out.record(session, webhooks_out.SUBSCRIBED, subscriber, now)
            return SignupResult(subscriber, created=True, send_confirmation=True, email_key=key)

    subscriber = existing
    if subscriber.status == ACTIVE:  # nothing changes; an email says so and where to go
        return SignupResult(
            subscriber,
            created=False,
            send_confirmation=False,
            already_subscribed=True,
            email_key=key,
        )
    if subscriber.status not in _CAN_CONFIRM:
        # Complained / erased: never mailed again from a form.
        return SignupResult(subscriber, created=False, send_confirmation=False, email_key=key)
    # Pending, unsubscribed or bounced: a new confirmation email (within the per-address
    # cooldown, confirmation_allowed) and nothing else. Anyone can type an address into the
    # form, so an unconfirmed submission never changes what is stored: a pending person keeps
    # the name, zone and series of their first signup (they change them on the preference page
    # once confirmed), and an unsubscribed person's consent record stays as it is until they
    # click the confirmation link (confirm records the new consent).
    return SignupResult(subscriber, created=False, send_confirmation=True, email_key=key)


def _same_write(session: Session, key: str) -> None:
    """The write a known (or erased) address costs, as the new row's INSERT does: one UPDATE
    under a savepoint that changes nothing (updated_at set to itself; no row when erased)."""
    with session.begin_nested():
        session.execute(
            update(Subscriber)
            .where(Subscriber.email_key == key)
            .values(updated_at=Subscriber.updated_at)
            .execution_options(synchronize_session=False)
        )


def _cooldown_key(secret: str, prefix: str, email_key: str) -> str:
    digest = hmac.new(secret.encode(), f"confirm:{email_key}".encode(), "sha256").hexdigest()
    return f"{prefix}confirm:{digest[:32]}"


def confirmation_wait(r: redis.Redis, secret: str, prefix: str, email_key: str) -> int:
    """Seconds until this address may have another confirmation email (0: it may now, or the
    counter can't be read). Reads only: the same work for every address, so the signup page
    can say so truthfully without telling whether the address is subscribed."""
    key = f"{_cooldown_key(secret, prefix, email_key)}:10m"
    try:
        count, left = r.get(key), int(r.ttl(key))
    except _REDIS_DOWN:
        return 0
    return left if count is not None and int(count) >= 1 and left > 0 else 0


def confirmation_allowed(r: redis.Redis, secret: str, prefix: str, email_key: str) -> bool:
    """Count one confirmation email for this address; False when it must not be sent.

    One per COOLDOWN_SECONDS and DAILY_LIMIT a day per address, whatever IP asks. The Redis
    keys hold an HMAC of the address under the secret key, never the address. Fails closed:
    when Redis can't be reached nothing is sent (the reader's page is the same either way).
    """
    base = _cooldown_key(secret, prefix, email_key)
    try:
        recent, _ = count_hit(r, f"{base}:10m", COOLDOWN_SECONDS)  # Redis 6.2 commands only
        if recent > 1:
            return False
        today, _ = count_hit(r, f"{base}:day", _DAY_SECONDS)
    except _REDIS_DOWN as exc:
        log.warning("confirmation email not sent: cooldown not checked (%s)", type(exc).__name__)
        return False
    return today <= DAILY_LIMIT


def _record_consent(subscriber: Subscriber, ip: str | None, form: str, now: dt.datetime) -> None:
    subscriber.consent_at = now
    subscriber.consent_method = "form"
    subscriber.consent_ip = (ip or "")[:64] or None
    subscriber.consent_form = form[:64]
    subscriber.consent_wording = CONSENT_WORDING


def confirm(
    session: Session,
    someone: Someone,
    now: dt.datetime,
    *,
    ip: str | None = None,
    form: str = "confirm",
    keep_pause: bool = True,
) -> bool:
    """Double opt-in: make the subscriber active and enroll them. False when nothing changed.

    Also resubscribes someone who unsubscribed (they resume where they left off); their new
    consent is recorded here, at the click (time, `ip`, `form`), never at the unconfirmed
    submission. Complained and erased addresses are never re-activated. A pause set before
    they left is kept unless they said to end it (`keep_pause`, asked on the confirm page).
    """
    subscriber = row_of(session, someone)
    if subscriber.status == ACTIVE:
        return False
    if subscriber.status not in _CAN_CONFIRM:
        return False
    resuming = subscriber.status != PENDING
    if resuming:
        _record_consent(subscriber, ip, form, now)
        if not keep_pause:
            subscriber.paused_until = None
    subscriber.status = ACTIVE
    subscriber.unsubscribed_at = None
    if subscriber.confirmed_at is None or resuming:
        subscriber.confirmed_at = now
    session.flush()
    webhooks_out.record(session, webhooks_out.CONFIRMED, subscriber, now)
    _enroll(session, subscriber, now)
    return True


def resubscribe(
    session: Session, subscriber: Subscriber, now: dt.datetime, *, ip: str | None = None
) -> bool:
    """Come back after unsubscribing: resumes at the next unsent part. Only for someone who
    confirmed just now: a preference link never calls this (it sends a fresh confirmation
    email, whose click goes through `confirm`)."""
    if subscriber.status not in (UNSUBSCRIBED, BOUNCED):
        return False
    return confirm(session, subscriber, now, ip=ip, form="preferences")


def _enroll(session: Session, subscriber: Subscriber, now: dt.datetime) -> None:
    """Enroll on confirmation; someone coming back keeps their places (and resumes there)."""
    slugs = subscriber.requested_series
    if enrollments(session, subscriber) and not subscriber.takes_new_series and slugs is None:
        slugs = []  # coming back: nothing new unless they take new series
    schedule.enroll(session, subscriber, now, series_slugs=slugs)
    subscriber.requested_series = None
    session.flush()


def first_article_text(
    session: Session, subscriber: Someone, now: dt.datetime | None = None
) -> str | None:
    """When the next article arrives (by the schedule rule, seen at `now`), in the subscriber's
    zone, e.g. "Tuesday 3 March at 09:00 (Europe/London)"; None when nothing is scheduled."""
    when = calendar.next_date(session, subscriber, now or calendar.utcnow())
    if when is None:
        return None
    return timing.describe(when, subscriber.timezone)


def chosen_series(session: Session, someone: Someone) -> list[str]:
    """Slugs the subscriber currently receives (or asked for, while pending)."""
    subscriber = row_of(session, someone)
    if subscriber.status == PENDING or not enrollments(session, subscriber):
        if subscriber.requested_series is not None:
            return list(subscriber.requested_series)
        return [s.slug for s in live_series(session)]
    rows = session.execute(
        select(Series.slug)
        .join(Enrollment, Enrollment.series_id == Series.id)
        .where(
            Enrollment.subscriber_id == subscriber.id,
            Enrollment.state != CANCELLED,
            Series.kind == SERIES_KIND,  # broadcasts are not series the reader chose
        )
        .order_by(Enrollment.position)
    )
    return [slug for (slug,) in rows]


def series_titles(session: Session, subscriber: Someone) -> list[str]:
    """Titles of the series this subscriber will receive, in their queue order."""
    titles = {s.slug: s.title for s in session.scalars(select(Series))}
    return [titles[slug] for slug in chosen_series(session, subscriber) if slug in titles]
