"""Broadcasts in the engine: a one-off letter's readers and due times, and its day kept clear.

A broadcast is a series of kind "broadcast" with one part. Each reader in its audience gets an
enrollment in it beside their series queue (position 0, ignored by the queue rules in
`schedule`), so the letter goes through the same claim, ledger, render-once and provider path
as a series part: one ledger row per reader (exactly once), suppression and status re-checked
at send time, counted wherever deliveries are.

When: "now", a fixed moment, or a date at each reader's usual slot (the send time of the series
they are reading, in their zone; readers between series: the first live series' send time).

Rules the plan applies each round (`make_way`; the day rule itself is
`core.schedule_rule.make_way`, which the calendar and every view project with):
- a series reader is never sent a broadcast and a series part on the same local day: a series
  part due on a day that holds a broadcast for that reader (scheduled, in flight or sent)
  moves to the same local time the next day. Its ledger row keeps the original slot, so the
  parts after it stay on their usual weekday (the cadence counts from the slot, not the move).
  A broadcast created after that day's series part already went out can't undo it: the
  broadcast still goes.
- a reader paused when their broadcast comes due does not get it later: a one-off letter is
  about its moment, so their broadcast enrollment is cancelled (nothing is sent or queued).
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from newsletter.core import schedule_rule as rule
from newsletter.core import timing
from newsletter.store.ledger import Claim, QueueChange, among, set_due
from newsletter.store.models import (
    BROADCAST_KIND,
    CANCELLED,
    CLAIMED,
    ENROLLED_ACTIVE,
    LIVE,
    RETRY,
    SENT,
    Broadcast,
    Delivery,
    Enrollment,
    Series,
    Subscriber,
)

Key = tuple[int, int, int]  # (subscriber id, series id, part number)

DEFAULT_SEND_TIME = "09:00"
NEAR = dt.timedelta(days=2)  # broadcasts further than this from a claim can't share its day

# when a broadcast goes out
NOW, MOMENT, SLOT = "now", "moment", "slot"
TIMINGS = (NOW, MOMENT, SLOT)


def live_broadcasts(
    session: Session, low: dt.datetime | None = None, high: dt.datetime | None = None
) -> set[int]:
    """Ids of the live (not cancelled) broadcast series; with `low` and `high`, only those
    whose moment or date lies near that window (so old broadcasts cost the plan nothing)."""
    query = (
        select(Series.id)
        .join(Broadcast, Broadcast.series_id == Series.id)
        .where(Series.kind == BROADCAST_KIND, Series.state == LIVE)
    )
    if low is not None and high is not None:
        query = query.where(
            or_(
                Broadcast.at.between(low - NEAR, high + NEAR),
                Broadcast.on_date.between((low - NEAR).date(), (high + NEAR).date()),
            )
        )
    return set(session.scalars(query))


def usual_send_times(session: Session, subscriber_ids: Iterable[int]) -> dict[int, str]:
    """Each reader's usual local send time: the one of the series they are reading; readers
    between series get the first live series' time (else 09:00)."""
    ids = list(subscriber_ids)
    found: dict[int, str] = {}
    for start in range(0, len(ids), 1000):
        rows = session.execute(
            select(Enrollment.subscriber_id, Series.send_time)
            .join(Series, Series.id == Enrollment.series_id)
            .where(
                Enrollment.subscriber_id.in_(ids[start : start + 1000]),
                Enrollment.state == ENROLLED_ACTIVE,
                Series.kind != BROADCAST_KIND,
            )
        )
        found.update({sid: t for sid, t in rows})
    fallback = session.scalar(
        select(Series.send_time)
        .where(Series.state == LIVE, Series.kind != BROADCAST_KIND)
        .order_by(Series.order, Series.queued_at, Series.id)
        .limit(1)
    )
    default = fallback or DEFAULT_SEND_TIME
    return {i: found.get(i, default) for i in ids}


def due_for(
    timing_kind: str,
    zone: str,
    send_time: str,
    now: dt.datetime,
    at: dt.datetime | None,
    on_date: dt.date | None,
) -> dt.datetime:
    """When one reader's broadcast is due: now, the fixed moment, or their slot on the date."""
    if timing_kind == NOW:
        return now
    if timing_kind == MOMENT:
        assert at is not None
        return at
    assert on_date is not None
    return timing.local_instant(on_date, timing.parse_time(send_time), zone)


def enroll_readers(
    session: Session,
    series: Series,
    readers: list[tuple[int, str, dt.date | None]],
    timing_kind: str,
    now: dt.datetime,
    at: dt.datetime | None = None,
    on_date: dt.date | None = None,
) -> list[int]:
    """Enroll (subscriber id, zone, paused_until) readers in a broadcast with their due times;
    readers paused on that day are left out. Returns the enrollment ids (mirror into Redis)."""
    times = usual_send_times(session, [r[0] for r in readers]) if timing_kind == SLOT else {}
    rows: list[dict[str, Any]] = []
    for sid, zone, paused in readers:
        due = due_for(timing_kind, zone, times.get(sid, DEFAULT_SEND_TIME), now, at, on_date)
        if not rule.letter_goes(rule.Reader(zone, paused_until=paused), rule.Letter(0, due), now):
            continue
        rows.append(
            {
                "subscriber_id": sid,
                "series_id": series.id,
                "position": 0,
                "next_part": 1,
                "next_due_at": due,
                "state": ENROLLED_ACTIVE,
                "not_before": None,
                "created_at": now,
                "updated_at": now,
            }
        )
    if rows:
        session.execute(Enrollment.__table__.insert(), rows)  # type: ignore[attr-defined]
    session.flush()
    return list(
        session.scalars(
            select(Enrollment.id).where(
                Enrollment.series_id == series.id, Enrollment.state == ENROLLED_ACTIVE
            )
        )
    )


def cancel(session: Session, series_id: int) -> list[int]:
    """Stop a broadcast: its series leaves LIVE (rows claimed meanwhile are dropped at send
    time) and the readers still waiting are cancelled. Returns their enrollment ids."""
    session.execute(update(Series).where(Series.id == series_id).values(state=CANCELLED))
    return list(
        session.scalars(
            update(Enrollment)
            .where(Enrollment.series_id == series_id, Enrollment.state == ENROLLED_ACTIVE)
            .values(state=CANCELLED, next_due_at=None)
            .returning(Enrollment.id)
            .execution_options(synchronize_session=False)
        )
    )


def make_way(
    session: Session,
    wanted: dict[Key, Claim],
    series_of: dict[int, Series],
    now: dt.datetime,
    redis_changes: list[QueueChange],
) -> int:
    """The plan's broadcast rules for this round's claims (see the module docstring): series
    parts on a broadcast's local day move a day later (out of `wanted`), a moved part keeps its
    original slot in the ledger, paused readers' broadcasts are cancelled. Returns how many
    claims were taken out (skipped). One small query when no broadcast is live."""
    if not wanted:
        return 0
    dues = [c.next_due_at for c in wanted.values() if c.next_due_at is not None]
    if not dues:
        return 0
    low, high = min(dues) - NEAR, max(dues) + NEAR
    bids = live_broadcasts(session, low, high)
    # broadcasts claimed this round count whatever their date (a late one, after a halt)
    bids |= {k[1] for k in wanted if series_of[k[1]].kind == BROADCAST_KIND}
    if not bids:
        return 0
    people = {k[0] for k in wanted}
    days = _broadcast_times(session, bids, people, low, high)
    mine = {k[0] for k in wanted if k[1] in bids}
    look = {p for p in people if p in days} | mine
    if not look:
        return 0
    zones = {
        sid: (zone, paused)
        for sid, zone, paused in session.execute(
            select(Subscriber.id, Subscriber.timezone, Subscriber.paused_until).where(
                among(session, Subscriber.id, look)
            )
        )
    }
    moved: list[tuple[int, dt.datetime]] = []
    dropped: list[int] = []
    for key, claim in list(wanted.items()):
        sid, series_id, _ = key
        if sid not in zones or claim.next_due_at is None:
            continue
        zone, paused = zones[sid]
        if series_id in bids:
            if rule.pause_holds(rule.Reader(zone, paused_until=paused), now):
                dropped.append(claim.id)
                redis_changes.append((claim.id, None))
                del wanted[key]
            continue
        if sid not in days:
            continue
        taken = {timing.local_date(t, zone) for t in days[sid]}
        way = rule.make_way(zone, claim.next_due_at, series_of[series_id].send_day, taken)
        if way.moved_to is not None:  # the broadcast's day: the part goes the next day
            moved.append((claim.id, way.moved_to))
            redis_changes.append((claim.id, way.moved_to))
            del wanted[key]
        elif way.slot != claim.next_due_at:  # moved here: the row keeps the usual slot
            wanted[key] = Claim(claim.id, way.slot)
    set_due(session, moved)
    if dropped:
        session.execute(
            update(Enrollment)
            .where(among(session, Enrollment.id, dropped))
            .values(state=CANCELLED, next_due_at=None)
            .execution_options(synchronize_session=False)
        )
    return len(moved) + len(dropped)


def _broadcast_times(
    session: Session, bids: set[int], people: set[int], low: dt.datetime, high: dt.datetime
) -> dict[int, list[dt.datetime]]:
    """subscriber id -> times of their broadcasts between low and high: waiting (enrollment
    due), in flight or sent (ledger row)."""
    found: dict[int, list[dt.datetime]] = defaultdict(list)
    waiting = session.execute(
        select(Enrollment.subscriber_id, Enrollment.next_due_at).where(
            Enrollment.series_id.in_(bids),
            Enrollment.state == ENROLLED_ACTIVE,
            among(session, Enrollment.subscriber_id, people),
            Enrollment.next_due_at.between(low, high),
        )
    )
    ledger = session.execute(
        select(Delivery.subscriber_id, Delivery.scheduled_for).where(
            Delivery.series_id.in_(bids),
            Delivery.status.in_((CLAIMED, SENT, RETRY)),
            among(session, Delivery.subscriber_id, people),
            Delivery.scheduled_for.between(low, high),
        )
    )
    for sid, at in [*waiting, *ledger]:
        if sid is not None and at is not None:
            found[sid].append(at)
    return found
