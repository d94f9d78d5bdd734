"""The therapist's roster: one person added, found, edited, unsubscribed or erased (admin, API, CLI)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.orm import Session

from newsletter.core import identity
from newsletter.core.config import Settings
from newsletter.engine import schedule
from newsletter.queue.dueset import RedisQueue
from newsletter.services import export, people, preferences
from newsletter.services.person_fields import (
    RosterError,
    activate,
    known_series,
    make_person,
    new_subscriber,
)
from newsletter.store import ledger, webhooks_out
from newsletter.store.db import session_scope
from newsletter.store.ledger import extras
from newsletter.store.models import (
    CADENCES,
    SUBSCRIBER_STATUSES,
    Enrollment,
    ProviderEvent,
    Subscriber,
    utcnow,
)

ADMIN = "admin"


# --- adding and finding --------------------------------------------------------------------


def add_subscriber(
    settings: Settings,
    *,
    email: str,
    name: str | None = None,
    timezone: str | None = None,
    series: Iterable[str] = (),
    confirmed: bool = False,
    method: str = ADMIN,
    now: dt.datetime | None = None,
) -> int:
    """Add one person by hand: pending + confirmation email, or (consent given elsewhere) active."""
    now = now or utcnow()
    with session_scope(settings.database_url) as session:
        try:
            person = make_person(
                0,
                email,
                name,
                timezone,
                list(series),
                default_timezone=settings.default_timezone,
                known_series=known_series(session),
            )
        except ValueError as exc:
            raise RosterError(str(exc)) from None
        if people.by_email(session, person.email) is not None:
            raise RosterError("this address is already on the list")
        if people.is_suppressed(session, settings.secret, person.email):
            raise RosterError("this address was erased on request; it can't be added again")
        sub = new_subscriber(
            person,
            confirmed=confirmed,
            method=f"{method}-consented" if confirmed else method,
            now=now,
        )
        session.add(sub)
        session.flush()
        if confirmed:
            activate(session, sub, person.series, now)
        sub_id = sub.id
    if confirmed:
        people.sync_subscribers(settings, [sub_id])
    else:
        from newsletter.services import mailing

        mailing.send_confirmations(settings, [sub_id])
    return sub_id


def find(session: Session, email: str) -> Subscriber | None:
    return people.by_email(session, email)


def search(
    session: Session,
    query: str = "",
    *,
    status: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[people.PersonView], int]:
    """Subscribers whose address or name contains `query` (any case); (page, total)."""
    stmt = select(Subscriber)
    q = "".join(c for c in query if not identity.has_control(c)).strip().lower()  # no NUL
    if q:
        stmt = stmt.where(
            or_(
                Subscriber.email_key.contains(q, autoescape=True),
                func.lower(Subscriber.name).contains(q, autoescape=True),
            )
        )
    if status:
        if status not in SUBSCRIBER_STATUSES:
            raise RosterError(f"unknown status {status!r}")
        stmt = stmt.where(Subscriber.status == status)
    total = session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    page = [
        people.view(row)
        for row in session.scalars(
            stmt.order_by(Subscriber.created_at.desc(), Subscriber.id.desc())
            .limit(limit)
            .offset(offset)
        )
    ]
    return page, total


def count(session: Session) -> int:
    return session.scalar(select(func.count(Subscriber.id))) or 0


# --- editing and unsubscribing -------------------------------------------------------------


def update_subscriber(
    settings: Settings,
    session: Session,
    subscriber: Subscriber,
    changes: dict[str, Any],
    now: dt.datetime | None = None,
) -> None:
    """Apply admin edits (name, zone, cadence, pause, new series) and reschedule by the same
    rule as the reader's own preference save (schedule.reschedule: a due part stays due).
    Redis follows when `session` commits."""
    try:
        if "name" in changes:
            subscriber.name = identity.clean_name(changes["name"])
        if changes.get("timezone"):
            subscriber.timezone = identity.check_zone(
                changes["timezone"], settings.default_timezone
            )
    except ValueError as exc:
        raise RosterError(str(exc)) from None
    if changes.get("cadence"):
        if changes["cadence"] not in CADENCES:
            raise RosterError("cadence must be weekly or fortnightly")
        subscriber.cadence = changes["cadence"]
    if "paused_until" in changes:
        subscriber.paused_until = changes["paused_until"]
    if changes.get("takes_new_series") is not None:
        subscriber.takes_new_series = bool(changes["takes_new_series"])
    session.flush()
    schedule.reschedule(session, subscriber, now or dt.datetime.now(dt.UTC))
    session.flush()
    people.sync_after_commit(settings, session, people.enrollment_ids(session, subscriber))


def unsubscribe(
    settings: Settings, session: Session, subscriber: Subscriber, now: dt.datetime | None = None
) -> bool:
    """Stop everything for this person (preferences.unsubscribe) and drop their queue entries
    from Redis once `session` commits. True when this call unsubscribed them."""
    changed = preferences.unsubscribe(session, subscriber, now or utcnow())
    people.sync_after_commit(settings, session, people.enrollment_ids(session, subscriber))
    return changed


# --- erasing -------------------------------------------------------------------------------


def erase(settings: Settings, session: Session, subscriber: Subscriber) -> list[int]:
    """GDPR erasure: the row goes, the ledger and stored events keep no personal data, the
    outbox copies of their emails are deleted, and a keyed hash of the address stays as the
    suppression (events arriving later for it are scrubbed: people.forget_erased_in_events).

    Returns the enrollment ids the caller must drop from the Redis queue after committing.
    """
    sub_id = subscriber.id
    address = subscriber.email_key
    people.lock(session, subscriber)  # a send in flight records its outcome first
    enrollment_ids = list(
        session.scalars(select(Enrollment.id).where(Enrollment.subscriber_id == sub_id))
    )
    ledger.forget_person(session, sub_id)
    extras.forget_person_extras(session, sub_id)
    webhooks_out.forget(session, sub_id)
    session.execute(
        update(ProviderEvent)
        .where(ProviderEvent.subscriber_id == sub_id)
        .values(subscriber_id=None, detail=None)
    )
    session.execute(delete(Enrollment).where(Enrollment.subscriber_id == sub_id))
    session.expunge(subscriber)
    session.execute(delete(Subscriber).where(Subscriber.id == sub_id))
    people.suppress(session, settings.secret, address)
    session.flush()
    _outbox().delete_person_files(settings, address)  # the copies of every email they were sent
    return enrollment_ids


def _outbox() -> Any:
    """The outbox module, loaded on first use: it brings the email renderer (jinja2, markdown),
    which an import (this module's biggest user) never needs: 55 ms off its start-up."""
    from newsletter.mail.backends import outbox

    return outbox


def update_person(
    settings: Settings, session: Session, subscriber_id: int, changes: dict[str, Any]
) -> people.PersonView | None:
    """update_subscriber for person `subscriber_id`; their new view, None if unknown."""
    sub = session.get(Subscriber, subscriber_id)
    if sub is None:
        return None
    update_subscriber(settings, session, sub, changes)
    return people.view(sub)


def unsubscribe_person(
    settings: Settings, session: Session, subscriber_id: int
) -> people.PersonView | None:
    """unsubscribe for person `subscriber_id`; their new view, None if unknown."""
    sub = session.get(Subscriber, subscriber_id)
    if sub is None:
        return None
    unsubscribe(settings, session, sub)
    return people.view(sub)


def new_links(session: Session, subscriber_id: int) -> bool:
    """New preference/unsubscribe links for `subscriber_id` (people.rotate_links); False if
    unknown."""
    sub = session.get(Subscriber, subscriber_id)
    if sub is None:
        return False
    people.rotate_links(sub)
    return True


def erase_person(settings: Settings, session: Session, subscriber_id: int) -> list[int] | None:
    """erase for person `subscriber_id` (the enrollment ids to drop from Redis after the
    commit); None if unknown."""
    sub = session.get(Subscriber, subscriber_id)
    return erase(settings, session, sub) if sub is not None else None


def record(session: Session, subscriber_id: int) -> dict[str, Any] | None:
    """Everything held about `subscriber_id` (export.subscriber_record); None if unknown."""
    sub = session.get(Subscriber, subscriber_id)
    return export.subscriber_record(session, sub) if sub is not None else None


def drop_from_queue(settings: Settings, enrollment_ids: Iterable[int]) -> None:
    ids = list(enrollment_ids)
    if ids:
        RedisQueue(settings).apply((i, None) for i in ids)


def erase_email(settings: Settings, email: str) -> bool:
    """Erase by address (CLI); False when nobody has it (a suppression entry is still added)."""
    with session_scope(settings.database_url) as session:
        sub = find(session, email)
        if sub is None:
            people.suppress(session, settings.secret, email)
            _outbox().delete_person_files(settings, email)
            return False
        ids = erase(settings, session, sub)
    drop_from_queue(settings, ids)
    return True
