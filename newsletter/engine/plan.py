"""The plan: due enrollments claimed in Redis -> ledger rows in `claimed` -> chunks of one article.

`plan(settings, now)` claims due enrollment ids in Redis, re-checks them in the database and
writes one ledger row per (subscriber, series, part) with INSERT … ON CONFLICT DO NOTHING: the
unique constraint decides; a conflict means the part was sent or is in flight (skip), except a
`retry` row whose time has come (taken back by compare-and-set). Returns chunks of at most
settings.batch_size delivery ids, one article each; memory is bounded by the batch size.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from newsletter.core.config import Settings
from newsletter.engine import broadcasts, schedule
from newsletter.engine.advance import advance, due_time
from newsletter.queue.dueset import QueueLost, RedisQueue
from newsletter.store.db import session_scope
from newsletter.store.ledger import (
    Claim,
    Move,
    QueueChange,
    among,
    claim_round,
    existing_rows,
    insert_claims,
    move_enrollments,
    take_back_keys,
    take_back_ready,
)
from newsletter.store.models import (
    ACTIVE,
    ENROLLED_ACTIVE,
    FAILED,
    LIVE,
    RETRY,
    SENT,
    SKIPPED,
    Enrollment,
    Series,
    Subscriber,
)

Key = tuple[int, int, int]  # (subscriber id, series id, part number): one ledger row
ToSend = tuple[int, int, int, int]  # (delivery id, series id, part number, crashes)


@dataclass(frozen=True)
class Chunk:
    """Delivery ids (ledger rows in `claimed`) for one article."""

    series_id: int
    part_number: int
    delivery_ids: tuple[int, ...]


@dataclass
class Plan:
    chunks: list[Chunk] = field(default_factory=list)
    claimed: int = 0  # enrollment ids claimed in Redis
    skipped: int = 0


def plan(
    settings: Settings,
    now: dt.datetime,
    limit: int | None = None,
    queue: RedisQueue | None = None,
) -> Plan:
    """Claim up to `limit` due enrollments and write their ledger rows; chunks to send."""
    queue = queue or RedisQueue(settings)
    ids = _claim_due(settings, queue, now, limit or settings.batch_size)
    result = Plan(claimed=len(ids))
    if not ids:
        return result
    redis_changes: list[QueueChange] = []
    later = now + dt.timedelta(seconds=settings.lease_seconds)
    to_send: list[ToSend] = []
    with session_scope(settings.database_url) as session:
        counts = schedule.part_counts(session)
        rows, series_of = _read_claimed(session, ids)
        for missing in set(ids) - {r[0] for r in rows}:
            redis_changes.append((missing, None))
        wanted, finished = _sort_claims(rows, series_of, counts, now, redis_changes, result)
        result.skipped += broadcasts.make_way(session, wanted, series_of, now, redis_changes)
        if finished:
            result.skipped += _finish_series(session, finished, counts, now, redis_changes)
        # retries whose time has come are taken back (retry -> claimed, compare-and-set on
        # their keys) and the rest inserted: one statement on PostgreSQL; on SQLite the INSERT,
        # then one UPDATE for the keys it ran into. A retry round reads none of its rows first.
        inserted: dict[Key, int] = {}
        taken: dict[Key, tuple[int, int]] = {}
        if wanted and session.get_bind().dialect.name == "postgresql":
            taken, inserted = claim_round(session, wanted, now)
        elif wanted:
            inserted = insert_claims(session, wanted, now)
            hit = [key for key in wanted if key not in inserted]
            taken = take_back_keys(session, hit, now) if hit else {}
        for key, (delivery_id, crashes) in taken.items():
            to_send.append((delivery_id, key[1], key[2], crashes))
            del wanted[key]
        if wanted:
            for key, delivery_id in inserted.items():
                to_send.append((delivery_id, key[1], key[2], 0))
            conflicts = [key for key in wanted if key not in inserted]
            if conflicts:
                result.skipped += _settle_conflicts(
                    session, conflicts, wanted, series_of, counts, now, later, to_send,
                    redis_changes,
                )  # fmt: skip
        session.flush()
    result.chunks.extend(_chunks(to_send, settings.batch_size))
    queue.apply(redis_changes)
    return result


def _claim_due(settings: Settings, queue: RedisQueue, now: dt.datetime, limit: int) -> list[int]:
    """Due enrollment ids leased in Redis; a Redis that lost its state is rebuilt first."""
    try:
        return queue.claim(now, limit)
    except QueueLost:
        with session_scope(settings.database_url) as session:
            queue.rebuild(session)
        return queue.claim(now, limit)


def _read_claimed(session: Session, ids: list[int]) -> tuple[list[Any], dict[int, Series]]:
    """The claimed enrollments as plain columns (with the subscriber's status), and their series.

    Plain columns, not ORM objects: a burst reads 1,000 rows a round and almost all of them only
    need checking; ORM objects are loaded for the rare rows that must move. The subscriber's
    status as a correlated subquery (one primary-key probe per row): as a join, PostgreSQL
    hash-joined a sequential scan of all subscribers every round."""
    person_status = (
        select(Subscriber.status).where(Subscriber.id == Enrollment.subscriber_id).scalar_subquery()
    )
    rows = session.execute(
        select(
            Enrollment.id,
            Enrollment.subscriber_id,
            Enrollment.series_id,
            Enrollment.state,
            Enrollment.next_due_at,
            Enrollment.next_part,
            person_status,
        ).where(among(session, Enrollment.id, ids))
    ).all()
    series_of: dict[int, Series] = {
        s.id: s for s in session.scalars(select(Series).where(Series.id.in_({r[2] for r in rows})))
    }
    return list(rows), series_of


def _sort_claims(
    rows: list[Any],
    series_of: dict[int, Series],
    counts: dict[int, int],
    now: dt.datetime,
    redis_changes: list[QueueChange],
    result: Plan,
) -> tuple[dict[Key, Claim], list[tuple[int, int]]]:
    """Each claimed enrollment: not sendable (out of the queue), not due yet (Redis was stale),
    past its series' last part (finished), or wanted: a ledger row to write.
    Returns (wanted rows, finished (enrollment id, subscriber id))."""
    wanted: dict[Key, Claim] = {}
    finished: list[tuple[int, int]] = []
    for eid, sid, series_id, state, next_due_at, next_part, status in rows:
        series = series_of[series_id]
        if (
            state != ENROLLED_ACTIVE
            or status != ACTIVE
            or series.state != LIVE
            or next_due_at is None
        ):
            redis_changes.append((eid, None))
            result.skipped += 1
        elif next_due_at > now:  # Redis was stale: the database says later
            redis_changes.append((eid, next_due_at))
            result.skipped += 1
        elif next_part > counts.get(series_id, 0):  # nothing left in it
            finished.append((eid, sid))
        else:
            wanted[(sid, series_id, next_part)] = Claim(eid, next_due_at)
    return wanted, finished


def _finish_series(
    session: Session,
    finished: list[tuple[int, int]],
    counts: dict[int, int],
    now: dt.datetime,
    redis_changes: list[QueueChange],
) -> int:
    """Enrollments with nothing left in their series move on (the next series in the queue):
    the ORM objects schedule needs, one SELECT each. Returns how many (all skipped)."""
    done = {
        e.id: e
        for e in session.scalars(
            select(Enrollment).where(among(session, Enrollment.id, [f[0] for f in finished]))
        )
    }
    people = {
        p.id: p
        for p in session.scalars(
            select(Subscriber).where(among(session, Subscriber.id, {f[1] for f in finished}))
        )
    }
    for eid, sid in finished:
        enrollment, sub = done[eid], people[sid]
        for row in schedule.advance_finished(session, enrollment, sub, now, counts):
            redis_changes.append((row.id, due_time(row, sub)))
    return len(finished)


def _chunks(to_send: list[ToSend], batch_size: int) -> list[Chunk]:
    """Rows to send, grouped by article and cut into chunks (smaller for crash suspects)."""
    groups: dict[tuple[int, int, int], list[int]] = defaultdict(list)
    for delivery_id, series_id, part, crashes in sorted(to_send):
        groups[(series_id, part, chunk_size(batch_size, crashes))].append(delivery_id)
    chunks: list[Chunk] = []
    for (series_id, part, size), delivery_ids in sorted(groups.items()):
        for start in range(0, len(delivery_ids), size):
            chunks.append(Chunk(series_id, part, tuple(delivery_ids[start : start + size])))
    return chunks


def chunk_size(batch_size: int, crashes: int) -> int:
    """How many rows go in one chunk: a full batch, fewer for rows whose send already killed
    its process. A crash counts against every handed row of its chunk, so suspects are split
    up: about √batch after one crash, alone after two; by its third crash a poison row is
    alone, and its innocent neighbours (sent before it, or never handed) are not counted."""
    if crashes <= 0:
        return batch_size
    if crashes == 1:
        return max(1, math.isqrt(batch_size))
    return 1


def _settle_conflicts(
    session: Session,
    conflicts: list[Key],
    wanted: dict[Key, Claim],
    series_of: dict[int, Series],
    counts: dict[int, int],
    now: dt.datetime,
    later: dt.datetime,
    to_send: list[ToSend],
    redis_changes: list[QueueChange],
) -> int:
    """Claims whose ledger row already exists, set-based: one SELECT for the rows, one
    compare-and-set UPDATE for the retries whose time has come (they join `to_send`), one
    SELECT each for the enrollments and people whose cursor lags the ledger. Returns how many
    were skipped (not sent by this round).

    - retry, time come: taken back (retry -> claimed) by compare-and-set; a row another tick
      took first is pushed back by a lease;
    - retry, not yet: due again at its retry time;
    - sent / failed / skipped: the ledger is ahead of the cursor: catch the cursor up;
    - claimed: in flight elsewhere, or handed with its outcome unknown: back in a lease
      (reconcile settles those).
    """
    existing = existing_rows(session, set(conflicts))
    ready = [
        r.id for r in existing if r.status == RETRY and (r.retry_at is None or r.retry_at <= now)
    ]
    taken = take_back_ready(session, ready, now)
    ready_set = set(ready)
    behind = [r for r in existing if r.status in (SENT, FAILED, SKIPPED)]
    # the ORM objects schedule needs, one SELECT each (held here: the identity map is weak)
    places = {
        e.id: e
        for e in session.scalars(
            select(Enrollment).where(
                among(
                    session,
                    Enrollment.id,
                    [wanted[(r.subscriber_id, r.series_id, r.part_number)].id for r in behind],
                )
            )
        )
    } if behind else {}  # fmt: skip
    people = {
        p.id: p
        for p in session.scalars(
            select(Subscriber).where(among(session, Subscriber.id, {r.subscriber_id for r in behind}))
        )
    } if behind else {}  # fmt: skip
    moved: list[Move] = []
    skipped = 0
    for row in existing:
        enr = wanted[(row.subscriber_id, row.series_id, row.part_number)]
        if row.id in taken:
            to_send.append((row.id, row.series_id, row.part_number, row.crashes))
            continue
        skipped += 1
        if row.status == RETRY and row.id in ready_set:  # another tick took it first
            redis_changes.append((enr.id, later))
        elif row.status == RETRY:
            redis_changes.append((enr.id, row.retry_at))
        elif row.status in (SENT, FAILED, SKIPPED):  # ledger ahead of the cursor: catch up
            advance(
                session, places[enr.id], people[row.subscriber_id], series_of[row.series_id],
                counts.get(row.series_id, 0), row.scheduled_for, now, redis_changes, counts, moved,
            )  # fmt: skip
        else:  # claimed: in flight elsewhere, or waiting for reconcile
            redis_changes.append((enr.id, later))
    move_enrollments(session, moved)
    return skipped
