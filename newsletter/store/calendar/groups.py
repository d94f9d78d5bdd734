"""Readers grouped set-based for the calendar: one GROUP BY row per readers alike to the rule."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, case, exists, func, or_, select, union_all
from sqlalchemy.orm import Session

from newsletter.core import schedule_rule as rule
from newsletter.core import timing
from newsletter.store.calendar.catalogue import Catalogue
from newsletter.store.models import (
    ACTIVE,
    BROADCAST_KIND,
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
    WaitingQueue,
)

NEAR = dt.timedelta(days=2)  # a broadcast sent longer ago than this takes no day still to come


@dataclass(frozen=True)
class Group:
    """Readers alike for the schedule rule: `queue` is what it projects, `count` how many."""

    queue: rule.Queue
    count: int
    key: tuple[Any, ...]  # the grouped columns' values (to find its readers again)
    by_queue: bool = True  # the key holds the waiting queue's text (`Reads.columns(True)`)


def _letters_near(session: Session, now: dt.datetime) -> list[int]:
    """Live broadcasts that still matter: waiting for someone, or sent lately (their day may
    hold back a part still to come)."""
    waiting = exists().where(Enrollment.series_id == Series.id, Enrollment.state == ENROLLED_ACTIVE)
    return list(
        session.scalars(
            select(Series.id)
            .join(Broadcast, Broadcast.series_id == Series.id)
            .where(
                Series.kind == BROADCAST_KIND,
                Series.state == LIVE,
                or_(
                    waiting,
                    Broadcast.at >= now - NEAR,
                    Broadcast.on_date >= (now - NEAR).date(),
                ),
            )
            .order_by(Series.id)
        )
    )


def _taken(letters: Sequence[int], readers: Any = None) -> Any:
    """Per reader, the moment of each of `letters` (waiting, in flight or sent): one column a
    letter, so readers with the same broadcast moments group together."""
    where_e = [Enrollment.series_id.in_(letters), Enrollment.state == ENROLLED_ACTIVE]
    where_d = [Delivery.series_id.in_(letters), Delivery.status.in_((CLAIMED, SENT, RETRY))]
    if readers is not None:
        where_e.append(Enrollment.subscriber_id.in_(readers))
        where_d.append(Delivery.subscriber_id.in_(readers))
    src = union_all(
        select(
            Enrollment.subscriber_id.label("sid"),
            Enrollment.series_id.label("bid"),
            Enrollment.next_due_at.label("at"),
        ).where(*where_e),
        select(Delivery.subscriber_id, Delivery.series_id, Delivery.scheduled_for).where(*where_d),
    ).subquery()
    moment = Enrollment.next_due_at.type
    return (
        select(
            src.c.sid.label("sid"),
            *(
                func.max(case((src.c.bid == b, src.c.at)), type_=moment).label(f"b{i}")
                for i, b in enumerate(letters)
            ),
        )
        .group_by(src.c.sid)
        .subquery()
    )


def _place_columns() -> tuple[Any, ...]:
    """A reader's active place as the grouping reads it."""
    return (
        Enrollment.id.label("id"),
        Enrollment.subscriber_id.label("subscriber_id"),
        Enrollment.series_id.label("series_id"),
        Enrollment.state.label("state"),
        Enrollment.next_part.label("next_part"),
        Enrollment.next_due_at.label("next_due_at"),
        Enrollment.not_before.label("not_before"),
    )


def _active(live: list[int], readers: Any = None) -> Any:
    """Each reader's active place in one of the `live` series; `readers` (a subquery of ids)
    keeps it to those. Their waiting queues come from `waiting_queues` (`Reads.joined`).

    The live series as values, not a subquery of series: the planner then knows nearly every
    active place is in one (from the column's statistics) and hash-joins the readers and their
    queues, where a semi-join on series left it guessing a sixth and probing 88k rows twice."""
    where = [Enrollment.state == ENROLLED_ACTIVE, Enrollment.series_id.in_(live)]
    if readers is not None:
        where.append(Enrollment.subscriber_id.in_(readers))
    return select(*_place_columns()).where(*where).subquery()


def _projected(series: Series | None) -> bool:
    """A series whose places the calendar projects: live, not a broadcast (as the engine sends)."""
    return series is not None and series.state == LIVE and series.kind != BROADCAST_KIND


def live_series(cat: Catalogue) -> list[int]:
    """The ids of the series the calendar projects, sorted."""
    return sorted(s.id for s in cat.series.values() if _projected(s))


def _waiting(rest: str | None, cat: Catalogue) -> tuple[rule.Place, ...]:
    """The places of a reader's waiting queue, from the text `waiting_queues` keeps
    ("series:part:start;…" in queue order): those of live series, as the engine sends them."""
    places = []
    for item in (rest or "").split(";"):
        if not item:
            continue
        sid, part, start = item.split(":")
        if _projected(cat.series.get(int(sid))):
            day = dt.date.fromisoformat(start) if start else None
            places.append(rule.Place(cat.times[int(sid)], int(part), None, day))
    return tuple(places)


def taken_days(moments: Iterable[dt.datetime | None], zone: str) -> frozenset[dt.date]:
    """The local dates (in `zone`) these broadcast moments take."""
    return frozenset(timing.local_date(rule.aware(m), zone) for m in moments if m is not None)


class Reads:
    """The statements behind the groups, built once per request."""

    def __init__(
        self,
        session: Session,
        cat: Catalogue,
        now: dt.datetime,
        readers: Any = None,
        queue: bool = True,
        letters: list[int] | None = None,
    ) -> None:
        self.letters = _letters_near(session, now) if letters is None else letters
        self.r = _active(live_series(cat), readers)
        self.queue = queue  # join the kept waiting queues
        self.taken = _taken(self.letters, readers) if self.letters else None

    def columns(self, queue: bool | None = None) -> tuple[Any, ...]:
        """The grouped columns: the active place, the reader, the waiting queue's text (unless
        `queue` is False, or these reads leave the queues out) and the broadcast moments."""
        r = self.r
        queue = self.queue if queue is None else queue and self.queue
        cols: tuple[Any, ...] = (
            r.c.series_id,
            r.c.next_part,
            r.c.next_due_at,
            Subscriber.timezone,
            Subscriber.cadence,
            Subscriber.paused_until,
            r.c.not_before,
            *((WaitingQueue.places,) if queue else ()),
        )
        if self.taken is not None:
            cols += tuple(self.taken.c[f"b{i}"] for i in range(len(self.letters)))
        return cols

    def joined(self, query: Any) -> Any:
        query = query.join(Subscriber, Subscriber.id == self.r.c.subscriber_id)
        if self.queue:
            query = query.outerjoin(
                WaitingQueue, WaitingQueue.subscriber_id == self.r.c.subscriber_id
            )
        if self.taken is not None:
            query = query.outerjoin(self.taken, self.taken.c.sid == self.r.c.subscriber_id)
        return query

    def due(self, before: dt.datetime) -> list[Any]:
        r = self.r
        return [
            r.c.next_due_at.is_not(None),
            r.c.next_due_at < before,
            Subscriber.status == ACTIVE,
        ]


SHORT = dt.timedelta(days=8)  # a view this near (the week, a count's people) groups in two steps


def groups(session: Session, cat: Catalogue, now: dt.datetime, before: dt.datetime) -> list[Group]:
    """Every group of readers whose active part is due before `before`, and every group of
    readers waiting for a broadcast due before it (one more statement when any is).

    A near `before` groups in two steps: first without the waiting queues (no join of the kept
    queues), and only the groups whose active series runs out before `before` again with their
    queues, restricted to their readers: a projection that stops inside the active series never
    reads the queue, so both ways give the same groups' sends. A far one groups once, queues and
    all (most of a month's groups run out).
    """
    letters = _letters_near(session, now)
    if before - now > SHORT:
        out = _grouped(session, cat, Reads(session, cat, now, letters=letters), before)
    else:
        out = _two_steps(session, cat, now, before, letters)
    if letters:
        out.extend(_letter_groups(session, letters, before))
    return out


def _grouped(session: Session, cat: Catalogue, reads: Reads, before: dt.datetime) -> list[Group]:
    """The groups of `reads`' readers due before `before`, one GROUP BY."""
    cols = reads.columns()
    query = reads.joined(select(*cols, func.count(reads.r.c.id))).where(*reads.due(before))
    out = []
    for row in session.execute(query.group_by(*cols)):
        sid, part, due, zone, cadence, paused, start, *rest = row[:-1]
        moments = rest[1:] if reads.queue else rest
        place = rule.Place(cat.times[sid], int(part), rule.aware(due), start)
        queue_of = rule.Queue(
            rule.Reader(zone, cadence, paused),
            (place, *_waiting(rest[0] if reads.queue else None, cat)),
            (),
            taken_days(moments, zone),
        )
        out.append(Group(queue_of, int(row[-1]), tuple(row[:-1]), reads.queue))
    return out


def runs_out(queue: rule.Queue, now: dt.datetime, before: dt.datetime) -> bool:
    """True when the active series of `queue` (projected alone) sends its last part before
    `before`, or has none left: then what comes after it (the waiting queue) may count."""
    active = queue.places[0]
    if active.next_part > active.series.parts:
        return True
    last = (active.series.key, active.series.parts)
    return any((s.key, s.part) == last for s in rule.project(queue, now, before))


def _two_steps(
    session: Session, cat: Catalogue, now: dt.datetime, before: dt.datetime, letters: list[int]
) -> list[Group]:
    alone = _grouped(session, cat, Reads(session, cat, now, None, False, letters), before)
    kept = [g for g in alone if not runs_out(g.queue, now, before)]
    again = {g.key for g in alone} - {g.key for g in kept}
    if not again:
        return kept
    # the readers of the groups that run out, by their active place (an index range each)
    moments = sorted({(k[0], k[2]) for k in again})
    readers = select(Enrollment.subscriber_id).where(
        Enrollment.state == ENROLLED_ACTIVE,
        or_(*(and_(Enrollment.series_id == sid, same_moment(Enrollment.next_due_at, due))
              for sid, due in moments)),
    )  # fmt: skip
    queued = _grouped(session, cat, Reads(session, cat, now, readers, letters=letters), before)
    # the same readers' groups, now with their queues: keep those of the groups that ran out
    return kept + [g for g in queued if g.key[:7] + g.key[8:] in again]


def same_moment(column: Any, moment: dt.datetime) -> Any:
    """`column` holds `moment`, however SQLite stored its text: rows the bulk enrollment wrote
    before it bound through UTCDateTime read '2027-01-05 09:00:00' where the ORM writes
    '…09:00:00.000000', and as text those are not equal. A microsecond either side: equality
    on PostgreSQL."""
    tick = dt.timedelta(microseconds=1)
    return and_(column > moment - tick, column < moment + tick)


def _letter_groups(session: Session, letters: list[int], before: dt.datetime) -> list[Group]:
    cols = (Enrollment.series_id, Enrollment.next_due_at, Subscriber.timezone,
            Subscriber.paused_until)  # fmt: skip
    rows = session.execute(
        select(*cols, func.count())
        .join(Subscriber, Subscriber.id == Enrollment.subscriber_id)
        .where(
            Enrollment.series_id.in_(letters),
            Enrollment.state == ENROLLED_ACTIVE,
            Enrollment.next_due_at.is_not(None),
            Enrollment.next_due_at < before,
            Subscriber.status == ACTIVE,
        )
        .group_by(*cols)
    )
    return [
        Group(
            rule.Queue(rule.Reader(zone, paused_until=paused), (), (rule.Letter(bid, due),)),  # type: ignore[arg-type]
            int(n),
            ("letter", bid, due, zone, paused),
        )
        for bid, due, zone, paused, n in rows
    ]
