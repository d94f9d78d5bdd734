"""Finding people, their enrollments and suppressions, and mirroring enrollments into Redis."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import event, func, select
from sqlalchemy.orm import Session

from newsletter.core import identity
from newsletter.core.config import Settings
from newsletter.core.identity import email_hash, email_key, normalise_email
from newsletter.core.vocabulary import ERASED
from newsletter.queue.dueset import RedisQueue
from newsletter.store.db import session_scope
from newsletter.store.models import (
    LIVE,
    SERIES_KIND,
    Enrollment,
    Series,
    Subscriber,
    Suppression,
)

BATCH = 500  # ids per IN (...) list


@dataclass(frozen=True)
class Person:
    """A reader as their link pages (preferences, unsubscribe, confirm, my data, received) see
    them: a snapshot, not a row. Pages hand it back to services, which read the row by `id`."""

    id: int
    public_id: str
    email: str
    email_key: str
    name: str | None
    timezone: str
    cadence: str
    paused_until: dt.date | None
    takes_new_series: bool
    status: str


PERSON_FIELDS = tuple(Person.__dataclass_fields__)

# What a service given someone accepts: the page's snapshot or (inside services) the row.
Someone = Person | Subscriber


def person_of(subscriber: Subscriber) -> Person:
    """The snapshot of one row (every Person field, by name)."""
    return Person(**{name: getattr(subscriber, name) for name in PERSON_FIELDS})


def row_of(session: Session, someone: Someone) -> Subscriber:
    """The row behind `someone` (itself when it is one)."""
    if isinstance(someone, Subscriber):
        return someone
    found = session.get(Subscriber, someone.id)
    if found is None:
        raise LookupError(f"no subscriber {someone.id}")
    return found


def reader(session: Session, public_id: str) -> Person | None:
    """The reader a link names, as pages see them; None for nobody (or an erased address)."""
    found = by_public_id(session, public_id)
    return None if found is None or found.status == ERASED else person_of(found)


def again(session: Session, someone: Someone) -> Person:
    """`someone` as they are now (after a service changed them: status, links, choices)."""
    return person_of(row_of(session, someone))


@dataclass(frozen=True)
class PersonView:
    """One subscriber as the admin, the API and the CLI show them: a snapshot, not a row."""

    id: int
    email: str
    name: str | None
    timezone: str
    status: str
    cadence: str
    paused_until: dt.date | None
    takes_new_series: bool
    consent_method: str | None
    consent_at: dt.datetime | None
    consent_ip: str | None
    consent_form: str | None
    consent_wording: str | None
    confirmed_at: dt.datetime | None
    unsubscribed_at: dt.datetime | None
    created_at: dt.datetime


VIEW_FIELDS = tuple(PersonView.__dataclass_fields__)


def view(subscriber: Subscriber) -> PersonView:
    """The snapshot of one row (every PersonView field, by name)."""
    return PersonView(**{name: getattr(subscriber, name) for name in VIEW_FIELDS})


def person(session: Session, subscriber_id: int) -> PersonView | None:
    """Subscriber `subscriber_id` as shown; None when there is no such person."""
    row = session.get(Subscriber, subscriber_id)
    return view(row) if row is not None else None


def by_public_id(session: Session, public_id: str) -> Subscriber | None:
    return session.scalar(select(Subscriber).where(Subscriber.public_id == public_id))


def lookup_key(email: str) -> str:
    """The key to look an address up by: of its normalised form when it is a valid address."""
    try:
        return email_key(normalise_email(email))
    except ValueError:
        return email_key(email)


def by_email(session: Session, email: str) -> Subscriber | None:
    """The subscriber with this address (any case, surrounding spaces ignored)."""
    return session.scalar(select(Subscriber).where(Subscriber.email_key == lookup_key(email)))


def rotate_links(subscriber: Subscriber) -> None:
    """Void every preference, unsubscribe and confirm link made so far for this person.

    Links carry (signed) only the random public id, which nothing else uses (the admin and
    the API name people by row id), so a new public id is the rotation: an old link finds
    nobody (the friendly 404 page) and the next email is built with the new id. Done from
    the admin's person page and on every unsubscribe-all (preferences.unsubscribe).
    """
    subscriber.public_id = identity.new_public_id()


def suppression_keys(secret: str, email: str) -> tuple[str, str]:
    """(keyed, plain) suppression keys of an address: rows are stored keyed (HMAC under the
    secret key); a plain SHA-256 row from before revision 0004 still counts until re-keyed."""
    plain = email_hash(email)
    return identity.rekey(secret, plain), plain


def is_suppressed(session: Session, secret: str, email: str) -> bool:
    """True for an address that was erased on request: it is never stored or mailed again.

    A row still in the old plain form is re-keyed on the way (the lookup knows its address)."""
    keyed, plain = suppression_keys(secret, email)
    rows = list(
        session.scalars(select(Suppression).where(Suppression.email_hash.in_((keyed, plain))))
    )
    if not rows:
        return False
    old = [row for row in rows if row.email_hash == plain]
    if old and len(rows) == 1:
        old[0].email_hash, old[0].keyed = keyed, True
    elif old:  # both forms stored: the plain one just goes
        session.delete(old[0])
    session.flush()
    return True


# Up to this many suppressions, a bulk lookup reads them all at once (erasures are rare)
# instead of sending every address's two keys in IN lists.
READ_ALL_SUPPRESSIONS = 20_000


def suppressed_among(session: Session, secret: str, emails: Iterable[str]) -> set[str]:
    """The email keys (`email_key`) of those of these addresses that were erased, either form."""
    by_key: dict[str, str] = {}
    for address in emails:
        keyed, plain = suppression_keys(secret, address)
        by_key[keyed] = by_key[plain] = email_key(address)
    if not by_key:
        return set()
    stored = session.scalar(select(func.count(Suppression.id))) or 0
    found: set[str] = set()
    if stored <= READ_ALL_SUPPRESSIONS:
        found.update(k for k in session.scalars(select(Suppression.email_hash)) if k in by_key)
        return {by_key[key] for key in found}
    keys = list(by_key)
    for start in range(0, len(keys), BATCH):
        found.update(
            session.scalars(
                select(Suppression.email_hash).where(
                    Suppression.email_hash.in_(keys[start : start + BATCH])
                )
            )
        )
    return {by_key[key] for key in found}


def suppress(session: Session, secret: str, email: str) -> None:
    """Keep the keyed hash of the address so it is never imported or mailed again (idempotent)."""
    if not is_suppressed(session, secret, email):
        key = identity.suppression_key(secret, email)
        session.add(Suppression(email_hash=key, reason="erased", keyed=True))
        session.flush()


def rekey_suppressions(session: Session, secret: str) -> int:
    """Turn every plain SHA-256 suppression (stored before revision 0004) into the keyed form;
    how many. Needs no address: the keyed form is an HMAC of the plain one."""
    rows = list(session.scalars(select(Suppression).where(Suppression.keyed.is_(False))))
    stored = set(session.scalars(select(Suppression.email_hash).where(Suppression.keyed)))
    for row in rows:
        key = identity.rekey(secret, row.email_hash)
        if key in stored:  # already there in the keyed form: the plain one just goes
            session.delete(row)
        else:
            row.email_hash, row.keyed = key, True
    session.flush()
    return len(rows)


# What an event for an erased address keeps: what it was and when, never whom or the text.
_EVENT_FIELDS_KEPT = (
    "event",
    "sg_event_id",
    "sg_message_id",
    "timestamp",
    "type",
    "kind",
    "delivery_id",
)
ERASED_ADDRESS = "erased@erased.invalid"  # stands in for it (never a subscriber's address)


def _event_address(item: object) -> str | None:
    """An event's address when it could be one (events.parse_sendgrid refuses the rest)."""
    address = item.get("email") if isinstance(item, dict) else None
    if not isinstance(address, str) or not 0 < len(address) <= 320:
        return None
    try:
        address.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate from a JSON escape
        return None
    return address


def forget_erased_in_events(settings: Settings, payload: list[Any]) -> list[Any]:
    """Provider events (a webhook batch, as posted) with those about an erased address scrubbed.

    A bounce or a `processed` can arrive days after the erasure; matched by the address's
    keyed hash (the suppressions), such an event keeps its type, ids and time, loses the
    address and every text (a bounce reason quotes the address), and points at nobody.
    """
    addresses = [a for e in payload if (a := _event_address(e)) is not None]
    if not addresses:
        return payload
    with session_scope(settings.database_url) as session:
        erased = suppressed_among(session, settings.secret, addresses)
    if not erased:
        return payload
    scrubbed: list[Any] = []
    for item in payload:
        address = _event_address(item)
        if address is not None and email_key(address) in erased:
            item = {k: item[k] for k in _EVENT_FIELDS_KEPT if k in item}
            item["email"] = ERASED_ADDRESS
        scrubbed.append(item)
    return scrubbed


def live_series(session: Session) -> list[Series]:
    """Series a reader can choose, in queue order."""
    return list(
        session.scalars(
            select(Series)
            .where(Series.state == LIVE, Series.kind == SERIES_KIND)  # not broadcasts
            .order_by(Series.order, Series.id)
        )
    )


def enrollments(session: Session, subscriber: Someone) -> list[Enrollment]:
    """The subscriber's series enrollments in queue order (their broadcasts are not choices)."""
    return list(
        session.scalars(
            select(Enrollment)
            .join(Series, Series.id == Enrollment.series_id)
            .where(Enrollment.subscriber_id == subscriber.id, Series.kind == SERIES_KIND)
            .order_by(Enrollment.position, Enrollment.id)
        )
    )


def enrollment_ids(session: Session, subscriber: Someone) -> list[int]:
    """Ids of every enrollment of this subscriber (to mirror into Redis after a commit)."""
    return [row.id for row in enrollments(session, subscriber)]


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


def sync_queue(settings: Settings, enrollment_ids: Iterable[int]) -> None:
    """Make Redis reflect the database for these enrollments (call after the commit): due ones
    scheduled, the others removed."""
    ids = sorted(set(enrollment_ids))
    if not ids:
        return
    with session_scope(settings.database_url) as session:
        RedisQueue(settings).sync_enrollments(session, ids)


def sync_subscribers(settings: Settings, subscriber_ids: Sequence[int]) -> None:
    """Mirror every enrollment of these subscribers into Redis (call after the commit)."""
    ids = list(subscriber_ids)
    if not ids:
        return
    found: list[int] = []
    with session_scope(settings.database_url) as session:
        for start in range(0, len(ids), BATCH):
            found += session.scalars(
                select(Enrollment.id).where(
                    Enrollment.subscriber_id.in_(ids[start : start + BATCH])
                )
            )
    sync_queue(settings, found)


def sync_after_commit(settings: Settings, session: Session, enrollment_ids: Sequence[int]) -> None:
    """Mirror these enrollments into Redis when `session` next commits. (Should it roll back
    and commit later, the mirror still shows the database: Redis is derived state.)"""
    ids = list(enrollment_ids)
    if ids:
        event.listen(session, "after_commit", lambda _s: sync_queue(settings, ids), once=True)
