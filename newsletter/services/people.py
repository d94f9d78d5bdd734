"""Finding people, their enrollments and suppressions, and mirroring enrollments into Redis."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sqlalchemy import event, select
from sqlalchemy.orm import Session

from newsletter.core.config import Settings
from newsletter.core.identity import email_hash, email_key, normalise_email
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


def is_suppressed(session: Session, email: str) -> bool:
    """True for an address that was erased on request: it is never stored or mailed again."""
    digest = email_hash(email)
    return (
        session.scalar(select(Suppression.id).where(Suppression.email_hash == digest)) is not None
    )


def suppress(session: Session, email: str) -> None:
    """Keep the hashed address so it is never imported or mailed again (idempotent)."""
    if not is_suppressed(session, email):
        session.add(Suppression(email_hash=email_hash(email), reason="erased"))


def live_series(session: Session) -> list[Series]:
    """Series a reader can choose, in queue order."""
    return list(
        session.scalars(
            select(Series)
            .where(Series.state == LIVE, Series.kind == SERIES_KIND)  # not broadcasts
            .order_by(Series.order, Series.id)
        )
    )


def enrollments(session: Session, subscriber: Subscriber) -> list[Enrollment]:
    """The subscriber's series enrollments in queue order (their broadcasts are not choices)."""
    return list(
        session.scalars(
            select(Enrollment)
            .join(Series, Series.id == Enrollment.series_id)
            .where(Enrollment.subscriber_id == subscriber.id, Series.kind == SERIES_KIND)
            .order_by(Enrollment.position, Enrollment.id)
        )
    )


def enrollment_ids(session: Session, subscriber: Subscriber) -> list[int]:
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
