"""The activity list on a person's page: what the admin did to this reader, newest first."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from newsletter.store.models import ReaderAction

# The actions and how the page names them (the service writes the detail).
EDITED, MOVED, SKIPPED, SENT_AGAIN, CORRECTION_SENT = (
    "edited",
    "moved",
    "skipped",
    "sent_again",
    "correction_sent",
)
LABELS = {
    EDITED: "Details changed",
    MOVED: "Moved",
    SKIPPED: "Part skipped",
    SENT_AGAIN: "Part sent again",
    CORRECTION_SENT: "Correction sent",
}


@dataclass(frozen=True)
class Activity:
    at: dt.datetime
    action: str
    label: str
    detail: str


def note(session: Session, subscriber_id: int, action: str, detail: str, now: dt.datetime) -> None:
    """Record one action on this reader (in the caller's transaction: it commits with it)."""
    note_each(session, [subscriber_id], action, detail, now)


def note_each(
    session: Session, subscriber_ids: list[int], action: str, detail: str, now: dt.datetime
) -> None:
    """The same action on each of these readers (a correction to everyone who had a part): one
    executemany, in the caller's transaction."""
    if action not in LABELS:
        raise ValueError(f"unknown reader action {action!r}")
    if subscriber_ids:
        session.execute(
            insert(ReaderAction),
            [
                {"subscriber_id": s, "at": now, "action": action, "detail": detail}
                for s in subscriber_ids
            ],
        )


def activity(session: Session, subscriber_id: int, limit: int = 100) -> list[Activity]:
    rows = session.scalars(
        select(ReaderAction)
        .where(ReaderAction.subscriber_id == subscriber_id)
        .order_by(ReaderAction.at.desc(), ReaderAction.id.desc())
        .limit(limit)
    )
    return [Activity(r.at, r.action, LABELS[r.action], r.detail) for r in rows]
