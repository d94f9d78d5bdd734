"""Queueing a series for everyone, and reopening it for readers who finished before new parts."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from newsletter.core import schedule_rule as rule
from newsletter.engine.enrollment import append_queued, reopen
from newsletter.engine.schedule import part_counts, place_each
from newsletter.store import series as series_store
from newsletter.store.models import (
    ACTIVE,
    BROADCAST_KIND,
    ENROLLED_ACTIVE,
    FINISHED,
    LIVE,
    QUEUED,
    Enrollment,
    Subscriber,
)
from newsletter.store.reader_locks import lock_readers


class ScheduleError(Exception):
    """A schedule request that can't be done (unknown series, …); the message says why."""


PLACE_BATCH = 500  # readers placed together: their reads and writes shared (schedule.place_each)


@dataclass
class QueueReport:
    count: int  # subscribers the series was appended to
    first_date: dt.date | None  # earliest first send (UTC date) among them, None if none yet
    enrollment_ids: list[int] = field(default_factory=list)  # changed: mirror into Redis


def queue_series(
    session: Session, slug: str, start: dt.date | None, now: dt.datetime
) -> QueueReport:
    """Make a series live and append it to every active subscriber who takes new series.

    `start` becomes the series' start (`starts_on`; None clears it): nobody gets part 1 before
    that local date, neither the readers here now nor those who join later (their enrollments
    take it from the series: `schedule.opening`). Subscribers with nothing active (finished
    everything) start it at their first slot on or after `start`. Queued again with another
    start (or none), readers who have not had part 1 move to it (`_restart`).
    """
    series = series_store.by_slug(session, slug)
    if series is None:
        raise ScheduleError(f"no series {slug!r} (see `newsletter series list`)")
    if series.kind == BROADCAST_KIND:  # its readers were chosen when it was written
        raise ScheduleError(f"{slug!r} is a broadcast, not a series (see `newsletter broadcast`)")
    if series.state != LIVE:
        series.state = LIVE
    if series.queued_at is None:
        series.queued_at = now
    series.starts_on = start
    session.flush()
    counts = part_counts(session)
    report = QueueReport(count=0, first_date=None)
    report.enrollment_ids += _restart(session, series.id, start, now, counts)
    already = select(Enrollment.subscriber_id).where(Enrollment.series_id == series.id)
    last_id = 0
    while True:
        batch = list(
            session.scalars(
                select(Subscriber)
                .where(
                    Subscriber.status == ACTIVE,
                    Subscriber.takes_new_series.is_(True),
                    Subscriber.id > last_id,
                    Subscriber.id.not_in(already),
                )
                .order_by(Subscriber.id)
                .limit(PLACE_BATCH)
            )
        )
        if not batch:
            break
        last_id = batch[-1].id
        # one statement a batch; place_each reads the rows back with the others
        append_queued(session, [sub.id for sub in batch], series, now)
        report.count += len(batch)
        for changed in place_each(session, batch, now, counts=counts):  # the rule, 500 at once
            report.enrollment_ids.append(changed.id)
            if changed.series_id == series.id and changed.next_due_at is not None:
                day = changed.next_due_at.date()
                report.first_date = min(report.first_date or day, day)
        session.expunge_all()
    return report


def _restart(
    session: Session,
    series_id: int,
    start: dt.date | None,
    now: dt.datetime,
    counts: dict[int, int],
) -> list[int]:
    """The series is queued again with another start: its enrollments that have not had part 1
    take the new `not_before`, and those it is active for get part 1 at their first slot after
    `now` on or after it. A part 1 already due stays due (as a preference save never delays
    it): the tick is sending it. Returns the changed ids; none when the start is unchanged."""
    waiting = (
        Enrollment.series_id == series_id,
        Enrollment.next_part == 1,
        Enrollment.state.in_((QUEUED, ENROLLED_ACTIVE)),
        Enrollment.not_before.is_distinct_from(start),
    )
    lock_readers(session, select(Enrollment.subscriber_id).where(*waiting))
    rows = list(session.scalars(select(Enrollment).where(*waiting)))  # read once they are ours
    changed: list[int] = []
    to_place: list[int] = []
    for row in rows:
        if row.next_due_at is not None and rule.is_due(row.next_due_at, now):
            continue
        row.not_before = start
        changed.append(row.id)
        if row.state == ENROLLED_ACTIVE:
            row.next_due_at = None
            to_place.append(row.subscriber_id)
    session.flush()
    changed += _place_readers(session, to_place, now, counts)
    return sorted(set(changed))


def _place_readers(
    session: Session, subscriber_ids: list[int], now: dt.datetime, counts: dict[int, int]
) -> list[int]:
    """`place_each` for these readers, PLACE_BATCH at a time; the changed enrollment ids."""
    changed: list[int] = []
    for start in range(0, len(subscriber_ids), PLACE_BATCH):
        ids = subscriber_ids[start : start + PLACE_BATCH]
        readers = list(session.scalars(select(Subscriber).where(Subscriber.id.in_(ids))))
        changed += [e.id for e in place_each(session, readers, now, counts=counts)]
    return changed


def parts_appended(session: Session, series_id: int, now: dt.datetime) -> list[int]:
    """A part was added to a series: reopen FINISHED enrollments that have not had it.

    Those still in the series get it in turn anyway; those who finished it get it at their next
    free slot (at once if nothing else is active, else after what is queued). Returns changed ids.
    """
    counts = part_counts(session)
    total = counts.get(series_id, 0)
    finished = (
        Enrollment.series_id == series_id,
        Enrollment.state == FINISHED,
        Enrollment.next_part <= total,
    )
    lock_readers(session, select(Enrollment.subscriber_id).where(*finished))
    rows = session.execute(  # read once they are ours; one place a reader (one series)
        select(Enrollment.id, Enrollment.subscriber_id).where(*finished).order_by(Enrollment.id)
    ).all()
    changed: list[int] = []
    for start in range(0, len(rows), PLACE_BATCH):
        batch = rows[start : start + PLACE_BATCH]
        reopen(session, [row.id for row in batch], now)
        changed += [row.id for row in batch]
        changed += _place_readers(session, [row.subscriber_id for row in batch], now, counts)
    return sorted(set(changed))
