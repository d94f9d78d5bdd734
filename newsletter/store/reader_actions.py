"""The activity list on a person's page: what the admin did to this reader, newest first."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import select
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
    if action not in LABELS:
        raise ValueError(f"unknown reader action {action!r}")
    session.add(ReaderAction(subscriber_id=subscriber_id, at=now, action=action, detail=detail))


def activity(session: Session, subscriber_id: int, limit: int = 100) -> list[Activity]:
    rows = session.scalars(
        select(ReaderAction)
        .where(ReaderAction.subscriber_id == subscriber_id)
        .order_by(ReaderAction.at.desc(), ReaderAction.id.desc())
        .limit(limit)
    )
    return [Activity(r.at, r.action, LABELS[r.action], r.detail) for r in rows]
