"""Enrollments: each subscriber's queue of series, which one is active, and when its next part is due.

Rules (DESIGN.md "Schedule semantics"):
- a subscriber has at most one ACTIVE enrollment; later series wait as QUEUED, in queue order
  (position; new series are appended);
- part 1 goes out at the first slot strictly after confirmation; each next part one cadence later
  in the subscriber's local calendar; a new series starts at the following slot (at least one
  cadence after the last part), never before its `not_before` date (the series' start, from
  `series queue --start`, given to every enrollment in it: `opening`);
- the cadence is the slower of the series' and the subscriber's preference; `paused_until`
  (a local date) holds every slot back until that date; un-pausing resumes at the next part;
- saving preferences never delays a part that is already due; a pause, time zone or cadence
  change moves only what the rule in `reschedule` says (one function, one docstring);
- positions only move forward: `next_part` never decreases, so nobody gets a part twice.
The database is the truth; callers mirror changes into Redis (`queue.sync_enrollments`).
Many new readers at once (imports): engine.enrollment, the same rows set-based.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from newsletter.core import schedule_rule as rule
from newsletter.engine.schedule_reads import (
    broadcast_ids,
    last_slot,
    last_slots,
    part_counts,
    reader_of,
    series_in_queue_order,
    times_of,
)
from newsletter.store import webhooks_out
from newsletter.store.models import (
    ACTIVE,
    ENROLLED_ACTIVE,
    FINISHED,
    LIVE,
    QUEUED,
    Enrollment,
    Series,
    Subscriber,
    utcnow,
)


def _enrollments(session: Session, subscriber_id: int) -> list[Enrollment]:
    return list(
        session.scalars(
            select(Enrollment)
            .where(
                Enrollment.subscriber_id == subscriber_id,
                Enrollment.series_id.not_in(broadcast_ids()),
            )
            .order_by(Enrollment.position, Enrollment.id)
        )
    )


def place(
    session: Session,
    subscriber: Subscriber,
    now: dt.datetime,
    *,
    previous: dt.datetime | None = None,
    recompute: bool = False,
    keep_due: bool = False,
    counts: dict[int, int] | None = None,
) -> list[Enrollment]:
    """Make sure the subscriber has the right ACTIVE enrollment with a due time; returns changed.

    `previous`: the slot of the last article (looked up when None); `recompute`: recompute the
    active enrollment's due time even when it has one; `keep_due` (with `recompute`): except when
    it is already due and no pause is in effect (see `reschedule`).
    """
    if subscriber.status != ACTIVE:
        return []
    rows = _enrollments(session, subscriber.id)
    if not rows:
        return []
    counts = counts if counts is not None else part_counts(session)
    series = _series_of(session, {r.series_id for r in rows})
    looked_up = previous is not None

    def prev() -> dt.datetime | None:
        nonlocal previous, looked_up
        if not looked_up:
            previous, looked_up = last_slot(session, subscriber.id), True
        return previous

    changed = _place_rows(subscriber, rows, series, counts, now, prev, recompute, keep_due)
    session.flush()
    return changed


def place_each(
    session: Session,
    subscribers: Sequence[Subscriber],
    now: dt.datetime,
    *,
    recompute: bool = False,
    keep_due: bool = False,
    counts: dict[int, int] | None = None,
) -> list[Enrollment]:
    """`place` for many readers at once (a series queued for everyone, a series resumed): the
    same rule for each (`_place_rows`), their enrollments, series and last slots read with one
    statement each instead of one per reader (queueing a series for 2,000 readers ran 8,810)."""
    people = [s for s in subscribers if s.status == ACTIVE]
    if not people:
        return []
    rows_of: dict[int, list[Enrollment]] = {s.id: [] for s in people}
    for row in session.scalars(
        select(Enrollment)
        .where(
            Enrollment.subscriber_id.in_(list(rows_of)),
            Enrollment.series_id.not_in(broadcast_ids()),
        )
        .order_by(Enrollment.subscriber_id, Enrollment.position, Enrollment.id)
    ):
        rows_of[row.subscriber_id].append(row)
    counts = counts if counts is not None else part_counts(session)
    series = _series_of(session, {r.series_id for rows in rows_of.values() for r in rows})
    slots: dict[int, dt.datetime | None] | None = None

    def prev_of(subscriber_id: int) -> Callable[[], dt.datetime | None]:
        def prev() -> dt.datetime | None:
            nonlocal slots
            if slots is None:  # the first reader who needs one: every reader's, one statement
                slots = last_slots(session, list(rows_of))
            return slots.get(subscriber_id)

        return prev

    changed: list[Enrollment] = []
    for subscriber in people:
        rows = rows_of[subscriber.id]
        if rows:
            prev = prev_of(subscriber.id)
            changed += _place_rows(subscriber, rows, series, counts, now, prev, recompute, keep_due)
    session.flush()
    return changed


def _series_of(session: Session, ids: set[int]) -> dict[int, Series]:
    return {s.id: s for s in session.scalars(select(Series).where(Series.id.in_(ids)))}


def _place_rows(
    subscriber: Subscriber,
    rows: list[Enrollment],
    series: dict[int, Series],
    counts: dict[int, int],
    now: dt.datetime,
    prev: Callable[[], dt.datetime | None],
    recompute: bool,
    keep_due: bool,
) -> list[Enrollment]:
    """The rule of `place` on one reader's rows (in queue order); the rows it changed."""
    active, changed = _settle_active(rows, counts)
    if active is None:
        active = _start_next_queued(rows, series, counts)
    if active is not None and (active.next_due_at is None or recompute):
        due = _due_time(subscriber, series[active.series_id], active, now, prev, keep_due)
        if due != active.next_due_at:
            active.next_due_at = due
            changed.append(active)
        elif active not in changed:
            changed.append(active)
    return changed


def _settle_active(
    rows: list[Enrollment], counts: dict[int, int]
) -> tuple[Enrollment | None, list[Enrollment]]:
    """Keep the first ACTIVE row with a part left; later ones wait, finished ones finish."""
    active: Enrollment | None = None
    changed: list[Enrollment] = []
    for row in rows:
        if row.state != ENROLLED_ACTIVE:
            continue
        if active is not None:  # never two at once: the later one waits
            row.state, row.next_due_at = QUEUED, None
            changed.append(row)
        elif row.next_part > counts.get(row.series_id, 0):
            row.state, row.next_due_at = FINISHED, None
            changed.append(row)
        else:
            active = row
    return active, changed


def _start_next_queued(
    rows: list[Enrollment], series: dict[int, Series], counts: dict[int, int]
) -> Enrollment | None:
    """Nothing active: the first QUEUED row of a live series with a part left becomes ACTIVE."""
    for row in rows:
        s = series[row.series_id]
        if row.state == QUEUED and s.state == LIVE and row.next_part <= counts.get(s.id, 0):
            row.state, row.next_due_at = ENROLLED_ACTIVE, None
            return row
    return None


def _due_time(
    subscriber: Subscriber,
    series: Series,
    active: Enrollment,
    now: dt.datetime,
    previous: Callable[[], dt.datetime | None],
    keep_due: bool,
) -> dt.datetime:
    """The active row's due time: kept when already due and unpaused (`keep_due`), else its
    next slot after `now`."""
    current = active.next_due_at
    if (
        keep_due
        and current is not None
        and rule.is_due(current, now)
        and not rule.pause_holds(reader_of(subscriber), now)
    ):
        return current  # already due: a preference save never delays it
    return rule.slot_after(
        reader_of(subscriber), times_of(series), now, previous(), active.not_before
    )


def opening(series: Series, position: int, now: dt.datetime) -> dict[str, Any]:
    """The columns of a new enrollment in `series` at queue `position` (QUEUED at part 1;
    `place` makes it active): every way a reader enters a series (`series queue`, confirming,
    resubscribing, choosing it in the preferences, an import) makes its row from these.

    `not_before` is the series' start (`series queue --start`, kept on the series): nobody gets
    part 1 before that local date, whether they were there when it was queued or came later."""
    return {
        "series_id": series.id,
        "position": position,
        "next_part": 1,
        "state": QUEUED,
        "not_before": series.starts_on,
        "created_at": now,
        "updated_at": now,
    }


def enroll(
    session: Session,
    subscriber: Subscriber,
    now: dt.datetime,
    series_slugs: Sequence[str] | None = None,
) -> list[Enrollment]:
    """Enroll a confirmed subscriber in the live series they chose (default: all), in queue order.

    Existing enrollments are kept (re-subscribing resumes at the next unsent part). The first
    series becomes ACTIVE with part 1 at the first slot strictly after `now`.
    """
    existing = {row.series_id: row for row in _enrollments(session, subscriber.id)}
    position = max((row.position for row in existing.values()), default=0)
    wanted = None if series_slugs is None else set(series_slugs)
    added: list[Enrollment] = []
    for s in series_in_queue_order(session):
        if s.id in existing or (wanted is not None and s.slug not in wanted):
            continue
        position += 1
        row = Enrollment(subscriber_id=subscriber.id, **opening(s, position, now))
        session.add(row)
        added.append(row)
    session.flush()
    changed = place(session, subscriber, now)
    return added + [row for row in changed if row not in added]


def first_article_at(session: Session, subscriber: Subscriber) -> dt.datetime | None:
    """The earliest due time stored on the subscriber's active enrollments (the engine's state,
    for tests of it); what a reader is shown is `services.calendar.next_date` (the rule)."""
    return session.scalar(
        select(func.min(Enrollment.next_due_at)).where(
            Enrollment.subscriber_id == subscriber.id, Enrollment.state == ENROLLED_ACTIVE
        )
    )


def reschedule(
    session: Session, subscriber: Subscriber, now: dt.datetime, *, resuming: bool = False
) -> list[Enrollment]:
    """The one rule for the next due time after a preference save (or a resume); returns the
    changed rows (mirror them into Redis after the commit).

    Call it after the subscriber's fields (time zone, cadence, `paused_until`, series choice)
    hold the new values. "Due" means `next_due_at <= now`; "paused" means `now`'s date in the
    subscriber's (new) zone is before `paused_until`.

    Preference save (`resuming=False`: the preference centre, admin edits of a subscriber):
    - a part that is already due stays due, with its time unchanged, even when the time zone or
      cadence changed: saving preferences never delays it, and the next tick sends it;
    - a pause moves it, due or not, to the first slot on or after the pause date (a local date
      in the subscriber's zone);
    - a time zone or cadence change moves only a part not yet due: to the slot recomputed in the
      new zone and cadence, strictly after `now`, never before the last part sent + one cadence
      (the new one) and never before the series' `not_before`;
    - a series started by the save (the active one deselected, one re-chosen) starts at its next
      slot, as always.
    Clearing or shortening a pause is the subscriber's resume: the held part is not yet due, so it
    moves to the next slot (one part, then one per cadence; never a catch-up burst). A pause that
    simply ends needs no call: the part was placed at the first slot after it.

    Resume (`resuming=True`: the admin resumed a paused series, `roster.resume_series`): every
    active part, however long overdue, moves to the next slot strictly after `now`, at least one
    cadence after the last part sent — one part, then one per cadence, no burst and nothing at
    an odd hour.

    Not active (pending, unsubscribed, …): nothing is due.
    """
    if subscriber.status != ACTIVE:
        for row in _enrollments(session, subscriber.id):
            if row.next_due_at is not None:
                row.next_due_at = None
        session.flush()
        return []
    return place(session, subscriber, now, recompute=True, keep_due=not resuming)


def reschedule_each(
    session: Session, subscribers: Sequence[Subscriber], now: dt.datetime, *, resuming: bool
) -> list[Enrollment]:
    """`reschedule` for many readers at once (a series resumed for everyone): the same rule,
    the active readers' rows read together (`place_each`)."""
    changed = [  # not active: nothing is due (reschedule clears it)
        row
        for subscriber in subscribers
        if subscriber.status != ACTIVE
        for row in reschedule(session, subscriber, now, resuming=resuming)
    ]
    return changed + place_each(session, subscribers, now, recompute=True, keep_due=not resuming)


def apply_preferences(
    session: Session, subscriber: Subscriber, now: dt.datetime | None = None
) -> list[Enrollment]:
    """Recompute every due time from scratch: `reschedule(..., resuming=True)`.

    For callers that recompute from scratch (tests, simulations); the product's saves and
    resumes call `reschedule` directly.
    """
    return reschedule(session, subscriber, now or utcnow(), resuming=True)


def move_on(
    session: Session,
    enrollment: Enrollment,
    subscriber: Subscriber,
    series: Series,
    part_count: int,
    sent_slot: dt.datetime,
    now: dt.datetime,
    counts: dict[int, int] | None = None,
) -> list[Enrollment]:
    """Part `enrollment.next_part` went out (slot `sent_slot`, at `now`): move the ORM rows
    on (`engine.advance.advance` is the one entry; this is its path through the queue).

    The next part is one cadence after the slot; when the send was more than a day late
    (retries, beat down), one cadence after the day before the real send instead, so two
    articles never arrive within a few days of each other (`schedule_rule.cadence_anchor`).
    Returns the changed rows.
    """
    enrollment.next_part += 1
    previous, after = rule.cadence_anchor(sent_slot, now)
    if enrollment.next_part <= part_count:
        enrollment.next_due_at = rule.slot_after(
            reader_of(subscriber), times_of(series, part_count), after, previous,
            enrollment.not_before,
        )  # fmt: skip
        return [enrollment]
    enrollment.state, enrollment.next_due_at = FINISHED, None
    webhooks_out.record(session, webhooks_out.SERIES_FINISHED, subscriber, now, series_id=series.id)
    session.flush()
    changed = place(session, subscriber, after, previous=previous, counts=counts)
    return [enrollment, *changed]


def advance_finished(
    session: Session,
    enrollment: Enrollment,
    subscriber: Subscriber,
    now: dt.datetime,
    counts: dict[int, int] | None = None,
) -> list[Enrollment]:
    """An active enrollment with no part left: finish it and start the next queued series."""
    enrollment.state, enrollment.next_due_at = FINISHED, None
    webhooks_out.record(
        session, webhooks_out.SERIES_FINISHED, subscriber, now, series_id=enrollment.series_id
    )
    session.flush()
    return [enrollment, *place(session, subscriber, now, counts=counts)]
