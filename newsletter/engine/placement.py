"""A reader's place set by hand: into a series, to a given part, past a part (the admin's tools).

One function, `move_to`, does all three; the rules:
- only an active reader, only a live series (not a broadcast), only a part the series has
  (or one past its last: the series ends and the next one in her queue starts);
- never while a part is on its way to her (a ledger row claimed, handed or waiting to retry):
  the engine would move the cursor again when that row settles;
- never back to a part she already has in the ledger (nobody gets a part twice through her
  progress: "send again" is a separate extra send, store.ledger.extras);
- the series moved into goes first in her queue and becomes the one active series; the series
  that was active waits (QUEUED) at its part; the next due time is `schedule.place`'s (the
  rule's slot after now, one cadence after her last article, never before the series' start).
Callers mirror the returned rows into Redis after the commit (`people.sync_after_commit`).
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.orm import Session

from newsletter.engine import schedule
from newsletter.store.ledger.places import highest_part, in_flight
from newsletter.store.models import (
    ACTIVE,
    BROADCAST_KIND,
    ENROLLED_ACTIVE,
    LIVE,
    QUEUED,
    Enrollment,
    Series,
    Subscriber,
)
from newsletter.store.reader_locks import lock_readers


class PlacementError(Exception):
    """The move can't be made; the message says why, in words for the admin."""


def _rows(session: Session, subscriber_id: int) -> list[Enrollment]:
    return list(
        session.scalars(
            select(Enrollment)
            .join(Series, Series.id == Enrollment.series_id)
            .where(Enrollment.subscriber_id == subscriber_id, Series.kind != BROADCAST_KIND)
            .order_by(Enrollment.position, Enrollment.id)
        )
    )


def check_move(
    session: Session, subscriber: Subscriber, series: Series, part: int, *, to_end: bool = False
) -> int:
    """Why `move_to` would refuse (PlacementError), else the series' part count. `to_end`
    allows the part after the last (a skip of the last part: the series ends)."""
    if subscriber.status != ACTIVE:
        raise PlacementError("Only an active reader can be moved.")
    if series.kind == BROADCAST_KIND or series.state != LIVE:
        raise PlacementError(f"“{series.title}” is not being sent, so nobody can be moved into it.")
    count = schedule.part_counts(session).get(series.id, 0)
    if not 1 <= part <= count + (1 if to_end else 0):
        raise PlacementError(f"“{series.title}” has parts 1 to {count}.")
    if in_flight(session, subscriber.id):
        raise PlacementError(
            "A part is on its way to this reader right now; try again in a few minutes."
        )
    had = highest_part(session, subscriber.id, series.id)
    if part <= had:
        raise PlacementError(
            f"They already had part {had} of “{series.title}”: a reader never goes back. "
            "To send them an earlier part, use “Send a part again”."
        )
    return count


def move_to(
    session: Session,
    subscriber: Subscriber,
    series: Series,
    part: int,
    now: dt.datetime,
    *,
    to_end: bool = False,
) -> list[Enrollment]:
    """Set the reader's place to `part` of `series` (with `to_end`, count + 1: past its end);
    returns the changed enrollments. PlacementError when a rule above refuses (nothing
    changed)."""
    lock_readers(session, [subscriber.id])  # a send in flight records first (reader_locks)
    check_move(session, subscriber, series, part, to_end=to_end)
    rows = _rows(session, subscriber.id)
    target = next((r for r in rows if r.series_id == series.id), None)
    first = min((r.position for r in rows), default=1)
    changed: list[Enrollment] = []
    for row in rows:
        if row is not target and row.state == ENROLLED_ACTIVE:
            row.state, row.next_due_at = QUEUED, None  # waits at its part
            changed.append(row)
    if target is None:
        target = Enrollment(subscriber_id=subscriber.id, **schedule.opening(series, first - 1, now))
        session.add(target)
    elif target.position != first or len([r for r in rows if r.position == first]) > 1:
        target.position = first - 1
    target.state, target.next_part, target.next_due_at = ENROLLED_ACTIVE, part, None
    target.updated_at = now
    session.flush()
    changed.append(target)
    placed = schedule.place(session, subscriber, now, recompute=True)
    return changed + [row for row in placed if row not in changed]


def active_place(session: Session, subscriber: Subscriber) -> tuple[Series, int] | None:
    """Her active series and the part that comes next (what "skip" skips), or None."""
    for row in _rows(session, subscriber.id):
        if row.state == ENROLLED_ACTIVE:
            series = session.get(Series, row.series_id)
            assert series is not None
            return series, row.next_part
    return None


def skip(session: Session, subscriber: Subscriber, now: dt.datetime) -> tuple[str, int]:
    """Skip the part that comes next in her active series (`move_to` the part after it);
    returns (series title, the part skipped)."""
    lock_readers(session, [subscriber.id])  # her place read once a send in flight recorded it
    found = active_place(session, subscriber)
    if found is None:
        raise PlacementError("Nothing is coming for this reader, so there is no part to skip.")
    series, part = found
    move_to(session, subscriber, series, part + 1, now, to_end=True)
    return series.title, part
