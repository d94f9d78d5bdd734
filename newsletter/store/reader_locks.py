"""Readers' rows locked, in id order, before a change to many readers' enrollments."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from newsletter.store.models import Subscriber


def lock_readers(session: Session, readers: Sequence[int] | Select[int]) -> None:
    """Hold these readers' rows until the transaction ends (PostgreSQL; SQLite lets one writer
    in at a time anyway), taken in id order as a send takes them, in one statement. `readers`:
    a few ids, or a SELECT of subscriber ids (run inside that statement: nothing comes back to
    Python). Call it before reading the enrollments you will change.

    A send locks its readers' rows after the provider call, then moves their enrollments. The
    database's waiting-queue trigger locks a reader's row once a queued place of theirs changes
    (store/migrations 0020). A writer that changed places first would hold a place the send
    wants while waiting for the reader the send holds: a deadlock, and PostgreSQL aborts one
    of the two. Taken first, these locks make it wait for the send and read afterwards."""
    if session.get_bind().dialect.name != "postgresql":
        return
    session.execute(
        select(Subscriber.id)
        .where(Subscriber.id.in_(readers))
        .order_by(Subscriber.id)
        .with_for_update(key_share=True)
    ).all()
