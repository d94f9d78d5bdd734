"""Readers' rows locked, in id order, before a change to many readers' enrollments."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session

from newsletter.store.models import Subscriber

LOCK_BATCH = 5_000  # ids a statement (an IN list; the locks stay until the transaction ends)


def lock_readers(session: Session, subscriber_ids: Iterable[int]) -> None:
    """Hold these readers' rows until the transaction ends (PostgreSQL; SQLite lets one writer
    in at a time anyway), taken in id order as a send takes them. Call it before reading the
    enrollments you will change.

    A send locks its readers' rows after the provider call, then moves their enrollments. The
    database's waiting-queue trigger locks a reader's row once a queued place of theirs changes
    (store/migrations 0020). A writer that changed places first would hold a place the send
    wants while waiting for the reader the send holds: a deadlock, and PostgreSQL aborts one
    of the two. Taken first, these locks make it wait for the send and read afterwards."""
    if session.get_bind().dialect.name != "postgresql":
        return
    ids = sorted(set(subscriber_ids))
    for start in range(0, len(ids), LOCK_BATCH):
        part = ids[start : start + LOCK_BATCH]
        session.execute(
            select(Subscriber.id)
            .where(Subscriber.id.in_(part))
            .order_by(Subscriber.id)
            .with_for_update(key_share=True)
        ).all()
