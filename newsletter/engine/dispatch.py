"""Dispatch: claim due enrollments -> ledger rows (unique) -> render once per article -> send -> record.

Two phases so Celery can fan out:
- `plan(settings, now)` claims due enrollment ids in Redis, re-checks them in the database and
  writes one ledger row per (subscriber, series, part) with INSERT … ON CONFLICT DO NOTHING: the
  unique constraint decides; a conflict means the part was sent or is in flight (skip), except a
  `retry` row whose time has come (taken back by compare-and-set). Returns chunks of at most
  settings.batch_size delivery ids, one article each.
- `send_chunk(settings, chunk, now)` re-checks suppression, subscriber and series state, renders
  the article once, hands recipients to the backend, records each outcome and advances
  enrollments.

Ledger states used here:
- claimed, retry_at set   : row written, provider not called yet (retry_at = claim time).
- claimed, retry_at NULL  : handed to the provider (compare-and-set, committed before the call);
                            outcome unknown until recorded. Never blindly resent: `reconcile`
                            settles it (outbox: the .eml file exists or not; SMTP/SendGrid: the
                            provider's `processed` event marks it sent; with no event after
                            UNKNOWN_RESEND_AFTER it is resent once and the error says so).
- sent                    : Accepted; enrollment advanced in the same transaction.
- retry                   : RetryLater (rate limit, 5xx, render error): due again at retry_at.
- failed                  : Failed (permanent for this address): recorded and the enrollment
                            moves on to the next part, so one bad address never blocks a cursor
                            (the address is normally suppressed by its bounce event anyway).
Rows that must not be sent (unsubscribed, suppressed, series or subscriber paused, stale) are
deleted while still un-handed, so a later resubscribe or resume sends the part then.
Memory is bounded by batch_size: ticks claim, plan and send one batch at a time.
"""

from __future__ import annotations

import datetime as dt
import email.parser
import hashlib
import logging
import math
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from sqlalchemy import and_, any_, bindparam, case, delete, func, select, text, true, update
from sqlalchemy.orm import Session

from newsletter.core import timing
from newsletter.core.config import Settings
from newsletter.engine import schedule
from newsletter.mail.message import (
    Accepted,
    Failed,
    Outcome,
    RetryLater,
    SendingHalted,
    Unknown,
)
from newsletter.mail.recipient import recipient
from newsletter.queue.dueset import QueueLost, RedisQueue
from newsletter.queue.ticklock import TickLock
from newsletter.store.db import session_scope
from newsletter.store.models import (
    ACTIVE,
    CLAIMED,
    ENROLLED_ACTIVE,
    FAILED,
    LIVE,
    RETRY,
    SENT,
    SKIPPED,
    Delivery,
    Enrollment,
    Part,
    Series,
    Subscriber,
    Suppression,
    utcnow,
)

log = logging.getLogger(__name__)

RENDER_RETRY = dt.timedelta(hours=1)
UNKNOWN_RESEND_AFTER = dt.timedelta(hours=24)
# On a row reconcile resent (its first hand-over's outcome stayed unknown): kept once it is sent,
# so the ledger says why that reader may have had the part twice.
RESENT_NOTE = "outcome unknown after a crash; sent again"
# A row whose send killed its process this many times is failed, so it can't block a batch.
MAX_CRASHES = 3
POISON_NOTE = f"sending it stopped the sending process {MAX_CRASHES} times; not sent"
MAX_ROUNDS = 100_000  # a tick stops after this many claim rounds (never reached in practice)


@dataclass
class TickSummary:
    """What a tick (or one chunk) did; `tick --json`, the tasks and the logs print the same.

    due      enrollments claimed as due
    sent     accepted by the provider
    retry    not sent yet and attempted again later: the provider pushed back (429, 5xx,
             refused connection), sending is halted, the article failed to render, or the
             outcome is unknown (handed over, no answer) and reconcile settles it
    skipped  nothing to send after all (unsubscribed, paused, suppressed, already sent, in
             flight elsewhere, Redis was stale)
    failed   permanent for that address (the provider refused it); the reader moves on
    """

    due: int = 0
    sent: int = 0
    retry: int = 0
    skipped: int = 0
    failed: int = 0

    def add(self, other: TickSummary) -> None:
        self.due += other.due
        self.sent += other.sent
        self.retry += other.retry
        self.skipped += other.skipped
        self.failed += other.failed

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


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


def email_hash(address: str) -> str:
    """The suppression key (as in roster): SHA-256 of the lower-cased address."""
    return hashlib.sha256(address.strip().lower().encode("utf-8")).hexdigest()


def _insert(session: Session) -> Any:
    table: Any = Delivery.__table__
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(table)
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(table)


_PG_TAKE_BACK = text(
    "UPDATE deliveries SET status = :claimed, retry_at = :now, updated_at = :now"
    " FROM unnest(CAST(:s AS integer[]), CAST(:se AS integer[]), CAST(:p AS integer[]))"
    " AS t(s, se, p)"
    " WHERE deliveries.subscriber_id = t.s AND deliveries.series_id = t.se"
    " AND deliveries.part_number = t.p AND deliveries.status = :retry"
    " AND (deliveries.retry_at IS NULL OR deliveries.retry_at <= :now)"
    " RETURNING deliveries.id, deliveries.subscriber_id, deliveries.series_id,"
    " deliveries.part_number, deliveries.crashes"
)


def _take_back_retries(
    session: Session, wanted: dict[tuple[int, int, int], _Claim], now: dt.datetime
) -> dict[tuple[int, int, int], tuple[int, int]]:
    """PostgreSQL: retry rows of these keys whose time has come -> claimed, by compare-and-set
    matched on the exact (subscriber, series, part) triples; {key: (delivery id, crashes)}."""
    keys = list(wanted)
    rows = session.execute(
        _PG_TAKE_BACK,
        {
            "s": [k[0] for k in keys],
            "se": [k[1] for k in keys],
            "p": [k[2] for k in keys],
            "claimed": CLAIMED,
            "retry": RETRY,
            "now": _naive_utc(now),
        },
    ).all()
    return {(s, se, p): (i, crashes) for i, s, se, p, crashes in rows}


_PG_CLAIMS = text(
    "INSERT INTO deliveries (subscriber_id, series_id, part_number, status, scheduled_for,"
    " attempts, retry_at, created_at, updated_at)"
    " SELECT t.s, t.se, t.p, :status, t.d, 0, :now, :now, :now"
    " FROM unnest(CAST(:s AS integer[]), CAST(:se AS integer[]), CAST(:p AS integer[]),"
    " CAST(:d AS timestamp[])) AS t(s, se, p, d)"
    " ON CONFLICT (subscriber_id, series_id, part_number) DO NOTHING"
    " RETURNING id, subscriber_id, series_id, part_number"
)

# Only the columns dispatch and schedule read (anything else still loads on access): a burst
# loads thousands of rows per round, and every skipped datetime column saves a conversion.
_LEDGER_COLUMNS = (
    Delivery.id,
    Delivery.status,
    Delivery.retry_at,
    Delivery.part_number,
    Delivery.scheduled_for,
)
_PERSON_COLUMNS = (
    Subscriber.id,
    Subscriber.public_id,
    Subscriber.email,
    Subscriber.name,
    Subscriber.status,
    Subscriber.timezone,
    Subscriber.cadence,
    Subscriber.paused_until,
)


@dataclass(slots=True)
class _Ledger:
    """The ledger columns send_chunk reads (in _LEDGER_COLUMNS order)."""

    id: int
    status: str
    retry_at: dt.datetime | None
    part_number: int
    scheduled_for: dt.datetime


@dataclass(slots=True)
class _Person:
    """The subscriber columns send_chunk reads (in _PERSON_COLUMNS order)."""

    id: int
    public_id: str
    email: str
    name: str | None
    status: str
    timezone: str
    cadence: str
    paused_until: dt.date | None


_PLACE_COLUMNS = (
    Enrollment.id,
    Enrollment.state,
    Enrollment.next_part,
    Enrollment.not_before,
    Enrollment.next_due_at,
)


@dataclass(slots=True)
class _Place:
    """The enrollment columns send_chunk reads (in _PLACE_COLUMNS order). Writes go through
    bulk UPDATEs; the ORM object is loaded only where schedule.advance needs one (a series'
    last part), so a chunk builds no 1,000 ORM objects."""

    id: int
    state: str
    next_part: int
    not_before: dt.date | None
    next_due_at: dt.datetime | None


_PG_SENT = text(
    "UPDATE deliveries SET status = :status, provider_message_id = t.m, sent_at = :now,"
    " retry_at = NULL, last_error = CASE WHEN deliveries.last_error LIKE :resent"
    " THEN deliveries.last_error END, crashes = deliveries.crashes - 1, updated_at = :now"
    " FROM unnest(CAST(:ids AS integer[]), CAST(:mids AS varchar[])) AS t(i, m)"
    " WHERE deliveries.id = t.i"
)


def _split(row: Any) -> tuple[_Ledger, _Person, _Place]:
    """A send_chunk result row -> (ledger, subscriber and enrollment columns)."""
    return _Ledger(*row[:5]), _Person(*row[5:13]), _Place(*row[13:])


def _naive_utc(value: dt.datetime) -> dt.datetime:
    return value.astimezone(dt.UTC).replace(tzinfo=None)  # as UTCDateTime stores it


class _Claim(NamedTuple):
    """An enrollment that is due: its id and the slot its ledger row is for."""

    id: int
    next_due_at: dt.datetime | None


def _insert_claims(
    session: Session, wanted: dict[tuple[int, int, int], _Claim], now: dt.datetime
) -> dict[tuple[int, int, int], int]:
    """INSERT … ON CONFLICT DO NOTHING one claimed ledger row per key; {key: new delivery id}.

    PostgreSQL: one small statement with array parameters (unnest), so neither SQLAlchemy nor
    psycopg builds and parses a 9,000-parameter query each round. SQLite: one cached
    executemany (insertmanyvalues). A conflict (row already there) returns nothing.
    """
    if session.get_bind().dialect.name == "postgresql":
        keys = list(wanted)
        params = {
            "s": [k[0] for k in keys],
            "se": [k[1] for k in keys],
            "p": [k[2] for k in keys],
            "d": [_naive_utc(e.next_due_at or now) for e in wanted.values()],
            "status": CLAIMED,
            "now": _naive_utc(now),
        }
        rows = session.execute(_PG_CLAIMS, params).all()
        return {(s, se, p): i for i, s, se, p in rows}
    values = [
        {
            "subscriber_id": key[0],
            "series_id": key[1],
            "part_number": key[2],
            "status": CLAIMED,
            "scheduled_for": enr.next_due_at,
            "attempts": 0,
            "retry_at": now,
            "created_at": now,
            "updated_at": now,
        }
        for key, enr in wanted.items()
    ]
    table: Any = Delivery.__table__
    stmt = (
        _insert(session)
        .on_conflict_do_nothing(index_elements=["subscriber_id", "series_id", "part_number"])
        .returning(table.c.id, table.c.subscriber_id, table.c.series_id, table.c.part_number)
    )
    return {(s, se, p): i for i, s, se, p in session.execute(stmt, values).all()}


def _id_range(ids: list[int]) -> Any:
    """A redundant `id BETWEEN min AND max` next to `id IN (…)`: a chunk's ledger ids come from
    one INSERT, so they are nearly consecutive, and with the range PostgreSQL reads them with a
    primary-key range scan instead of judging 1,000 separate probes dearer than a full scan
    (it did so at 100,000 rows)."""
    return Delivery.id.between(min(ids), max(ids)) if ids else true()


def _among(session: Session, column: Any, values: Any) -> Any:
    """`column IN (values)`; on PostgreSQL `column = ANY(:array)`, one parameter instead of
    1,000, so neither SQLAlchemy (post-compile) nor psycopg (query parsing) renders and parses
    1,000 placeholders per statement: that was a fifth of send_chunk's CPU."""
    values = list(values)
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import ARRAY

        return column == any_(bindparam(None, values, type_=ARRAY(column.type)))
    return column.in_(values)


def _status_is(status: str) -> Any:
    """`Delivery.status == status` that the planner can't answer from the status index.

    For statements that already name their rows by id: mid-burst the ledger holds up to N
    `claimed` rows while the statistics (gathered before the burst) say they are rare, and
    PostgreSQL then scanned ix_deliveries_status_updated (every claimed row) instead of the
    primary key for each chunk: 3+ s per chunk at N = 1,000,000.
    """
    return func.coalesce(Delivery.status, "") == status


def _is_halted(session: Session, settings: Settings) -> bool:
    """Halted for the API key these settings name (a new key lifts a halt by itself)."""
    from newsletter.store.halt import halted

    return halted(session, settings) is not None


# --- phase 1: claim and plan -----------------------------------------------------------------


def plan(
    settings: Settings,
    now: dt.datetime,
    limit: int | None = None,
    queue: RedisQueue | None = None,
) -> Plan:
    """Claim up to `limit` due enrollments and write their ledger rows; chunks to send."""
    queue = queue or RedisQueue(settings)
    limit = limit or settings.batch_size
    try:
        ids = queue.claim(now, limit)
    except QueueLost:
        with session_scope(settings.database_url) as session:
            queue.rebuild(session)
        ids = queue.claim(now, limit)
    result = Plan(claimed=len(ids))
    if not ids:
        return result
    redis_changes: list[tuple[int, dt.datetime | None]] = []
    later = now + dt.timedelta(seconds=settings.lease_seconds)
    with session_scope(settings.database_url) as session:
        counts = schedule.part_counts(session)
        # Plain columns, not ORM objects: a burst reads 1,000 rows a round and almost all of
        # them only need checking; ORM objects are loaded for the rare rows that must move.
        # The subscriber's status as a correlated subquery (one primary-key probe per row): as
        # a join, PostgreSQL hash-joined a sequential scan of all subscribers every round.
        person_status = (
            select(Subscriber.status)
            .where(Subscriber.id == Enrollment.subscriber_id)
            .scalar_subquery()
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
            ).where(_among(session, Enrollment.id, ids))
        ).all()
        series_of: dict[int, Series] = {
            s.id: s
            for s in session.scalars(select(Series).where(Series.id.in_({r[2] for r in rows})))
        }
        found = {r[0] for r in rows}
        for missing in set(ids) - found:
            redis_changes.append((missing, None))
        wanted: dict[tuple[int, int, int], _Claim] = {}
        finished: list[tuple[int, int]] = []  # (enrollment id, subscriber id): series done
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
                wanted[(sid, series_id, next_part)] = _Claim(eid, next_due_at)
        to_send: list[tuple[int, int, int, int]] = []  # (delivery id, series, part, crashes)
        if finished:  # the ORM objects schedule needs, one SELECT each, then move them on
            done = {
                e.id: e
                for e in session.scalars(
                    select(Enrollment).where(
                        _among(session, Enrollment.id, [f[0] for f in finished])
                    )
                )
            }
            people = {
                p.id: p
                for p in session.scalars(
                    select(Subscriber).where(
                        _among(session, Subscriber.id, {f[1] for f in finished})
                    )
                )
            }
            for eid, sid in finished:
                enrollment, sub = done[eid], people[sid]
                for row in schedule.advance_finished(session, enrollment, sub, now, counts):
                    redis_changes.append((row.id, _due(row, sub)))
                result.skipped += 1
        if wanted and session.get_bind().dialect.name == "postgresql":
            # retries whose time has come, taken back first (one statement), so a retry
            # round costs what a first send does: no INSERT that conflicts 1,000 times,
            # no SELECT of the rows it hit
            for key, (delivery_id, crashes) in _take_back_retries(session, wanted, now).items():
                to_send.append((delivery_id, key[1], key[2], crashes))
                del wanted[key]
        if wanted:
            inserted = _insert_claims(session, wanted, now)
            for key, delivery_id in inserted.items():
                to_send.append((delivery_id, key[1], key[2], 0))
            conflicts = [key for key in wanted if key not in inserted]
            if conflicts:
                result.skipped += _settle_conflicts(
                    session, conflicts, wanted, series_of, counts, now, later, to_send,
                    redis_changes,
                )  # fmt: skip
        session.flush()
    groups: dict[tuple[int, int, int], list[int]] = defaultdict(list)
    for delivery_id, series_id, part, crashes in sorted(to_send):
        groups[(series_id, part, chunk_size(settings.batch_size, crashes))].append(delivery_id)
    for (series_id, part, size), delivery_ids in sorted(groups.items()):
        for start in range(0, len(delivery_ids), size):
            result.chunks.append(Chunk(series_id, part, tuple(delivery_ids[start : start + size])))
    queue.apply(redis_changes)
    return result


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
    conflicts: list[tuple[int, int, int]],
    wanted: dict[tuple[int, int, int], _Claim],
    series_of: dict[int, Series],
    counts: dict[int, int],
    now: dt.datetime,
    later: dt.datetime,
    to_send: list[tuple[int, int, int, int]],
    redis_changes: list[tuple[int, dt.datetime | None]],
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
    keys = set(conflicts)
    # IN lists, filtered to the exact keys here: a batch of (subscriber, series, part) triples
    # as one OR of ANDs is an expression 1,000 deep, which SQLite refuses.
    existing = [
        row
        for row in session.execute(
            select(
                Delivery.id,
                Delivery.subscriber_id,
                Delivery.series_id,
                Delivery.part_number,
                Delivery.status,
                Delivery.retry_at,
                Delivery.scheduled_for,
                Delivery.crashes,
            ).where(
                _among(session, Delivery.subscriber_id, {k[0] for k in keys}),
                Delivery.series_id.in_({k[1] for k in keys}),
                Delivery.part_number.in_({k[2] for k in keys}),
            )
        ).all()
        if (int(row[1] or 0), row[2], row[3]) in keys
    ]
    ready = [r[0] for r in existing if r[4] == RETRY and (r[5] is None or r[5] <= now)]
    taken: set[int] = set()
    if ready:
        taken = set(
            session.scalars(
                update(Delivery)
                .where(_among(session, Delivery.id, ready), _id_range(ready), _status_is(RETRY))
                .values(status=CLAIMED, retry_at=now, updated_at=now)
                .returning(Delivery.id)
                .execution_options(synchronize_session=False)
            )
        )
    behind = [r for r in existing if r[4] in (SENT, FAILED, SKIPPED)]
    # the ORM objects schedule needs, one SELECT each (held here: the identity map is weak)
    places = {
        e.id: e
        for e in session.scalars(
            select(Enrollment).where(
                _among(
                    session, Enrollment.id, [wanted[(int(r[1] or 0), r[2], r[3])].id for r in behind]
                )
            )
        )
    } if behind else {}  # fmt: skip
    people = {
        p.id: p
        for p in session.scalars(
            select(Subscriber).where(_among(session, Subscriber.id, {r[1] for r in behind}))
        )
    } if behind else {}  # fmt: skip
    moved: list[tuple[int, int, dt.datetime | None]] = []
    skipped = 0
    for did, s_id, se, p, status, retry_at, scheduled, crashes in existing:
        s = int(s_id or 0)
        enr = wanted[(s, se, p)]
        if did in taken:
            to_send.append((did, se, p, crashes))
            continue
        skipped += 1
        if status == RETRY and did in ready:  # another tick took it first
            redis_changes.append((enr.id, later))
        elif status == RETRY:
            redis_changes.append((enr.id, retry_at))
        elif status in (SENT, FAILED, SKIPPED):  # ledger ahead of the cursor: catch up
            _advance(
                session, places[enr.id], people[s], series_of[se], counts.get(se, 0), scheduled,
                now, redis_changes, counts, moved,
            )  # fmt: skip
        else:  # claimed: in flight elsewhere, or waiting for reconcile
            redis_changes.append((enr.id, later))
    _move_enrollments(session, moved)
    return skipped


def _due(row: Enrollment | _Place, sub: Subscriber | _Person) -> dt.datetime | None:
    return row.next_due_at if row.state == ENROLLED_ACTIVE and sub.status == ACTIVE else None


# --- phase 2: send one chunk -------------------------------------------------------------------


def send_chunk(
    settings: Settings,
    chunk: Chunk,
    now: dt.datetime | None = None,
    queue: RedisQueue | None = None,
    before_send: Callable[[list[int]], None] | None = None,
) -> TickSummary:
    """Send one article to the claimed, still un-handed rows of `chunk`; record every outcome.

    `before_send` (tests) runs after the rows were marked handed, just before the provider call.
    """
    from newsletter.mail.backends import get_backend
    from newsletter.mail.render import shared_renderer
    from newsletter.store.halt import halt

    now = now or utcnow()
    queue = queue or RedisQueue(settings)
    summary = TickSummary()
    redis_changes: list[tuple[int, dt.datetime | None]] = []
    ids = list(chunk.delivery_ids)
    with session_scope(settings.database_url) as session:
        series = session.get(Series, chunk.series_id)
        part = session.scalar(
            select(Part).where(Part.series_id == chunk.series_id, Part.number == chunk.part_number)
        )
        counts = schedule.part_counts(session)
        count = counts.get(chunk.series_id, 0)
        # The ledger row, the subscriber and the enrollment as plain columns: a chunk loads
        # 1,000 of each.
        found = session.execute(
            select(*_LEDGER_COLUMNS, *_PERSON_COLUMNS, *_PLACE_COLUMNS)
            .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
            .join(
                Enrollment,
                and_(
                    Enrollment.subscriber_id == Delivery.subscriber_id,
                    Enrollment.series_id == Delivery.series_id,
                ),
            )
            .where(_among(session, Delivery.id, ids), _id_range(ids))
        ).all()
        # Filtered here, not in SQL: during a burst most of the ledger is `claimed`, and a
        # status condition can tempt the planner into scanning the status index instead of
        # looking the chunk's ids up by primary key.
        rows = [_split(r) for r in found if r[1] == CLAIMED and r[2] is not None]
        if not rows:
            return summary
        if _is_halted(session, settings):  # leave everything retryable for when sending resumes
            back = _back_to_retry(session, [d.id for d, _, _ in rows], now, now)
            summary.retry += len(back)
            queue.release([e.id for d, _, e in rows if d.id in back], now)
            return summary
        hashes = [email_hash(s.email) for _, s, _ in rows]
        suppressed = set(
            session.scalars(
                select(Suppression.email_hash).where(
                    _among(session, Suppression.email_hash, hashes)
                )
            )
        )
        keep: list[tuple[_Ledger, _Person, _Place]] = []
        drop: list[int] = []
        for (d, sub, enr), hashed in zip(rows, hashes, strict=True):
            ok = (
                series is not None
                and part is not None
                and series.state == LIVE
                and sub.status == ACTIVE
                and hashed not in suppressed
                and enr.state == ENROLLED_ACTIVE
                and enr.next_part == d.part_number
                # paused since the row was claimed: nothing before the pause ends
                and (
                    sub.paused_until is None
                    or timing.local_date(now, sub.timezone) >= sub.paused_until
                )
            )
            if ok:
                keep.append((d, sub, enr))
            else:
                drop.append(d.id)
                redis_changes.append((enr.id, _due(enr, sub) if sub.status == ACTIVE else None))
        if drop:  # never handed to anyone: forget the row so a later resume can send the part
            session.execute(
                delete(Delivery).where(
                    _among(session, Delivery.id, drop),
                    _status_is(CLAIMED),
                    Delivery.retry_at.is_not(None),
                )
            )
            summary.skipped += len(drop)
        if not keep:
            session.commit()
            queue.apply(redis_changes)
            return summary
        assert series is not None and part is not None
        try:
            message = shared_renderer(settings).article(series, part, count)
        except Exception as exc:  # a template error must not advance or send anything
            log.exception("rendering %s part %s failed", series.slug, part.number)
            retry_at = now + RENDER_RETRY
            back = _back_to_retry(
                session, [d.id for d, _, _ in keep], retry_at, now, f"render: {exc}"[:500]
            )
            reset = [(enr.id, retry_at) for d, _, enr in keep if d.id in back]
            _set_due(session, reset)
            redis_changes.extend(reset)
            summary.retry += len(reset)
            session.commit()
            queue.apply(redis_changes)
            return summary
        # Compare-and-set: only the process that flips claimed -> handed may call the provider.
        handed = set(
            session.scalars(
                update(Delivery)
                .where(
                    _among(session, Delivery.id, [d.id for d, _, _ in keep]),
                    _id_range(ids),
                    _status_is(CLAIMED),
                    Delivery.retry_at.is_not(None),
                )
                # the hand-over time, which reconcile's window counts from: `now` is the
                # moment this chunk runs (a Celery task adds its queueing delay to the tick's)
                # crashes + 1 until the outcome is recorded: a process that dies meanwhile
                # leaves it counted (poison rows, see reconcile)
                .values(
                    attempts=Delivery.attempts + 1,
                    crashes=Delivery.crashes + 1,
                    retry_at=None,
                    updated_at=now,
                )
                .returning(Delivery.id)
                .execution_options(synchronize_session=False)  # rows are read by id below
            )
        )
        session.commit()
        keep = [row for row in keep if row[0].id in handed]
        if not keep:
            queue.apply(redis_changes)
            return summary
        recipients = [
            recipient(settings, d.id, sub.public_id, sub.email, sub.name) for d, sub, _ in keep
        ]
        if before_send is not None:
            before_send([d.id for d, _, _ in keep])
        halted_reason: str | None = None
        refused_key: str | None = None
        try:
            outcomes: list[Outcome] = get_backend(settings).send(message, recipients)
        except SendingHalted as exc:
            halted_reason, refused_key = exc.reason, exc.fingerprint
            outcomes = list(exc.outcomes)
        # Preferences saved while the provider call ran (pause, cadence, time zone, status)
        # decide the next slot, not the values read before it: re-read them (one SELECT),
        # locked until the advance commits; a save in progress (subscribers.lock) finishes first.
        latest = {
            row[0]: _Person(*row)
            for row in session.execute(
                select(*_PERSON_COLUMNS)
                .where(_among(session, Subscriber.id, [s.id for _, s, _ in keep]))
                .order_by(Subscriber.id)
                .with_for_update()
            )
        }
        keep = [(d, latest.get(s.id, s), e) for d, s, e in keep]
        # Record outcomes (rows past a halt go back to retry, not sent).
        sent_rows: list[dict[str, Any]] = []
        other_rows: list[dict[str, Any]] = []
        moved: list[tuple[int, int, dt.datetime | None]] = []  # (enrollment id, next part, due)
        first_sent = False
        retries: list[tuple[int, dt.datetime]] = []  # (enrollment id, due again)
        unknown_rows: list[dict[str, Any]] = []  # handed, outcome unknown: the reason only
        last = [e.id for _, _, e in keep if e.next_part + 1 > count]
        if last:  # schedule.advance finishes these: load their ORM objects in one SELECT
            session.scalars(select(Enrollment).where(_among(session, Enrollment.id, last))).all()
        for i, (d, sub, enr) in enumerate(keep):
            outcome: Outcome | None = outcomes[i] if i < len(outcomes) else None
            if isinstance(outcome, Accepted):
                sent_rows.append({"i": d.id, "m": outcome.message_id[:200]})
                first_sent = True
                _advance(
                    session, enr, sub, series, count, d.scheduled_for, now, redis_changes, counts,
                    moved,
                )  # fmt: skip
                summary.sent += 1
            elif isinstance(outcome, Failed):
                other_rows.append({"i": d.id, "s": FAILED, "r": None, "e": outcome.reason[:1000]})
                _advance(
                    session, enr, sub, series, count, d.scheduled_for, now, redis_changes, counts,
                    moved,
                )  # fmt: skip
                summary.failed += 1
            elif isinstance(outcome, Unknown):
                # handed, no answer: stays handed (claimed, retry_at NULL) for reconcile; out
                # of the due set meanwhile (reconcile puts it back once settled)
                unknown_rows.append({"i": d.id, "e": f"outcome unknown: {outcome.reason}"[:1000]})
                redis_changes.append((enr.id, None))
                summary.retry += 1
            else:
                at = now
                reason = "sending halted"
                if isinstance(outcome, RetryLater):
                    # the provider's time is on the real clock: keep its delay, in this
                    # chunk's frame (a simulated `now` in tests and catch-up ticks)
                    wait = max(outcome.at - utcnow(), dt.timedelta(minutes=1))
                    at, reason = now + wait, outcome.reason
                other_rows.append({"i": d.id, "s": RETRY, "r": at, "e": reason[:1000]})
                retries.append((enr.id, at))
                redis_changes.append((enr.id, at if halted_reason is None else now))
                summary.retry += 1
        _move_enrollments(session, moved)
        _set_due(session, retries)
        _record(session, sent_rows, other_rows, now)
        if unknown_rows:
            session.execute(
                update(Delivery.__table__)  # type: ignore[arg-type]
                .where(Delivery.__table__.c.id == bindparam("i"))
                # updated_at stays the hand-over time (reconcile's window counts from it)
                .values(
                    last_error=bindparam("e"),
                    crashes=Delivery.__table__.c.crashes - 1,
                    updated_at=Delivery.__table__.c.updated_at,
                ),
                unknown_rows,
                execution_options={"synchronize_session": False},
            )
        if first_sent:
            session.execute(
                update(Part)
                .where(Part.id == part.id, Part.first_sent_at.is_(None))
                .values(first_sent_at=now)
            )
        if halted_reason is not None:
            halt(session, halted_reason, refused_key)
    queue.apply(redis_changes)
    return summary


def _back_to_retry(
    session: Session, ids: list[int], at: dt.datetime, now: dt.datetime, error: str | None = None
) -> set[int]:
    """Claimed, not yet handed rows -> retry at `at`, by compare-and-set; the ids it changed.

    A duplicate copy of the send task may have handed (or sent) some of them since they were
    read: those, and their enrollments, must not turn back into retries."""
    values: dict[str, Any] = {"status": RETRY, "retry_at": at, "updated_at": now}
    if error is not None:
        values["last_error"] = error
    return set(
        session.scalars(
            update(Delivery)
            .where(
                _among(session, Delivery.id, ids),
                _status_is(CLAIMED),
                Delivery.retry_at.is_not(None),
            )
            .values(**values)
            .returning(Delivery.id)
            .execution_options(synchronize_session=False)
        )
    )


def _advance(
    session: Session,
    enr: Enrollment | _Place,
    sub: Subscriber | _Person,
    series: Series,
    count: int,
    slot: dt.datetime,
    now: dt.datetime,
    redis_changes: list[tuple[int, dt.datetime | None]],
    counts: dict[int, int] | None = None,
    moved: list[tuple[int, int, dt.datetime | None]] | None = None,
) -> None:
    """schedule.advance; with `moved`, the common case (a next part in the same series, the
    enrollment stays active) is collected for one bulk UPDATE (`_move_enrollments`) instead of
    1,000 ORM updates at flush. Same values as schedule.advance computes."""
    if moved is not None and enr.next_part + 1 <= count:
        # a chunk is one article at one slot: people in the same zone/cadence/pause share it
        key = (
            sub.timezone, sub.cadence, sub.paused_until, enr.not_before, slot, now,
            series.send_day, series.send_time, series.cadence,
        )  # fmt: skip
        due = _slots.get(key)
        if due is None:
            due = schedule.next_part_due(
                _subscriber(session, sub), series, enr.not_before, slot, now
            )
            if len(_slots) > 10_000:
                _slots.clear()
            _slots[key] = due
        # nothing is due for someone who left meanwhile (a resubscribe schedules afresh)
        due_now = due if sub.status == ACTIVE else None
        moved.append((enr.id, enr.next_part + 1, due_now))
        redis_changes.append((enr.id, due_now))
        return
    person = _subscriber(session, sub, load=True)
    if not isinstance(enr, Enrollment):
        loaded = session.get(Enrollment, enr.id)  # from the identity map when send_chunk preloaded
        assert loaded is not None
        enr = loaded
    for row in schedule.advance(session, enr, person, series, count, slot, now, counts):
        if person.status != ACTIVE:
            row.next_due_at = None
        redis_changes.append((row.id, _due(row, person)))


def _subscriber(session: Session, sub: Subscriber | _Person, load: bool = False) -> Subscriber:
    """An ORM Subscriber for schedule's functions: the loaded one (`load`), else a transient
    one carrying the scheduling fields (slot computation reads nothing else)."""
    if isinstance(sub, Subscriber):
        return sub
    if load:
        found = session.get(Subscriber, sub.id)
        assert found is not None
        return found
    return Subscriber(
        id=sub.id, status=sub.status, timezone=sub.timezone, cadence=sub.cadence,
        paused_until=sub.paused_until,
    )  # fmt: skip


_slots: dict[tuple[Any, ...], dt.datetime] = {}  # slot_for results (pure function of the key)

_PG_MOVE = text(
    "UPDATE enrollments SET next_part = t.p, next_due_at = t.d, updated_at = :now"
    " FROM unnest(CAST(:ids AS integer[]), CAST(:parts AS integer[]),"
    " CAST(:dues AS timestamp[])) AS t(i, p, d)"
    " WHERE enrollments.id = t.i"
)


def _move_enrollments(session: Session, moved: list[tuple[int, int, dt.datetime | None]]) -> None:
    """Write the collected advances: one statement on PostgreSQL, one executemany on SQLite.

    Those Enrollment objects were left untouched in the session, so no flush overwrites them.
    """
    if not moved:
        return
    if session.get_bind().dialect.name == "postgresql":
        session.execute(
            _PG_MOVE,
            {
                "ids": [m[0] for m in moved],
                "parts": [m[1] for m in moved],
                "dues": [None if m[2] is None else _naive_utc(m[2]) for m in moved],
                "now": _naive_utc(utcnow()),
            },
        )
        return
    table: Any = Enrollment.__table__
    session.execute(
        update(table)
        .where(table.c.id == bindparam("i"))
        .values(next_part=bindparam("p"), next_due_at=bindparam("d"), updated_at=utcnow()),
        [{"i": i, "p": p, "d": d} for i, p, d in moved],
        execution_options={"synchronize_session": False},
    )


def _set_due(session: Session, dues: list[tuple[int, dt.datetime]]) -> None:
    """Enrollments due again at a given time (retries): one executemany."""
    if not dues:
        return
    table: Any = Enrollment.__table__
    session.execute(
        update(table)
        .where(table.c.id == bindparam("i"))
        .values(next_due_at=bindparam("d"), updated_at=utcnow()),
        [{"i": i, "d": d} for i, d in dues],
        execution_options={"synchronize_session": False},
    )


def _kept_note() -> Any:
    """A sent row's last_error: cleared, except the note that it was resent after a crash."""
    column = Delivery.__table__.c.last_error
    return case((column.like(f"{RESENT_NOTE}%"), column), else_=None)


def _record(
    session: Session,
    sent_rows: list[dict[str, Any]],
    other_rows: list[dict[str, Any]],
    now: dt.datetime,
) -> None:
    """Bulk ledger updates (executemany; the session's Delivery objects are not refreshed)."""
    fast = {"synchronize_session": False}

    if sent_rows and session.get_bind().dialect.name == "postgresql":
        session.execute(  # one statement with array parameters instead of 1,000 UPDATEs
            _PG_SENT,
            {
                "ids": [r["i"] for r in sent_rows],
                "mids": [r["m"] for r in sent_rows],
                "status": SENT,
                "resent": f"{RESENT_NOTE}%",
                "now": _naive_utc(now),
            },
        )
    elif sent_rows:
        session.execute(
            update(Delivery.__table__)  # type: ignore[arg-type]
            .where(Delivery.__table__.c.id == bindparam("i"))
            .values(
                status=SENT,
                provider_message_id=bindparam("m"),
                sent_at=now,
                retry_at=None,
                last_error=_kept_note(),
                crashes=Delivery.__table__.c.crashes - 1,
                updated_at=now,
            ),
            sent_rows,
            execution_options=fast,
        )
    if other_rows:
        session.execute(
            update(Delivery.__table__)  # type: ignore[arg-type]
            .where(Delivery.__table__.c.id == bindparam("i"))
            .values(
                status=bindparam("s"),
                retry_at=bindparam("r"),
                last_error=bindparam("e"),
                crashes=Delivery.__table__.c.crashes - 1,
                updated_at=now,
            ),
            other_rows,
            execution_options=fast,
        )


# --- the synchronous tick ----------------------------------------------------------------------


def sweep(
    settings: Settings,
    now: dt.datetime,
    send: Callable[[Chunk], TickSummary | None],
    *,
    wait_seconds: float = 0.0,
    queue: RedisQueue | None = None,
) -> tuple[TickSummary, int]:
    """The one tick loop: hold the tick lock, claim and plan due work one batch at a time, hand
    each chunk to `send` (inline: send_chunk; Celery: a send task, which returns None).
    Returns (summary, chunks handed on). Raises TickLocked when another tick holds the lock
    (after waiting up to `wait_seconds`); does nothing while sending is halted."""
    queue = queue or RedisQueue(settings)
    summary = TickSummary()
    chunks = 0
    with session_scope(settings.database_url) as session:
        if _is_halted(session, settings):
            return summary, chunks
    with TickLock(queue.redis, queue.lock_key).hold(wait_seconds):
        for _ in range(MAX_ROUNDS):
            result = plan(settings, now, queue=queue)
            summary.due += result.claimed
            summary.skipped += result.skipped
            for chunk in result.chunks:
                chunks += 1
                done = send(chunk)
                if done is not None:
                    summary.add(done)
            if result.claimed < settings.batch_size:
                break
    return summary, chunks


def tick(
    settings: Settings,
    now: dt.datetime | None = None,
    *,
    wait_seconds: float = 0.0,
    queue: RedisQueue | None = None,
) -> TickSummary:
    """Send everything due at or before `now`, inline, one bounded batch at a time.

    Only one tick runs at a time: TickLocked when another holds the lock after `wait_seconds`.
    """
    moment = now or utcnow()
    queue = queue or RedisQueue(settings)
    summary, _ = sweep(
        settings,
        moment,
        lambda chunk: send_chunk(settings, chunk, moment, queue=queue),
        wait_seconds=wait_seconds,
        queue=queue,
    )
    return summary


# --- reconcile -----------------------------------------------------------------------------------


@dataclass
class ReconcileReport:
    rebuilt: bool = False
    requeued: int = 0  # claimed but never handed (task lost): back to retry
    confirmed_sent: int = 0  # handed, outcome unknown, evidence found that it went out
    resent: int = 0  # handed, no evidence: retried
    unknown: int = 0  # handed, waiting for a provider event
    overdue_requeued: int = 0
    poisoned: int = 0  # its send killed the sending process MAX_CRASHES times: failed

    def as_dict(self) -> dict[str, int]:
        return {key: int(value) for key, value in asdict(self).items()}


def _outbox_message_id(outbox: Path, delivery_id: int) -> str | None:
    for path in [*outbox.glob(f"*Z-{delivery_id}.eml"), *outbox.glob(f"*Z-{delivery_id}-*.eml")]:
        with path.open("rb") as fh:
            headers = email.parser.BytesHeaderParser().parse(fh)
        return str(headers.get("Message-ID", "")).strip("<>") or f"outbox:{path.name}"
    return None


def reconcile(
    settings: Settings, now: dt.datetime | None = None, queue: RedisQueue | None = None
) -> ReconcileReport:
    """Settle rows stuck in `claimed`, rebuild a lost Redis, re-queue overdue enrollments."""
    now = now or utcnow()
    queue = queue or RedisQueue(settings)
    report = ReconcileReport()
    stale = now - dt.timedelta(seconds=settings.lease_seconds)
    changes: list[tuple[int, dt.datetime | None]] = []
    with session_scope(settings.database_url) as session:
        report.rebuilt = queue.ensure(session)
        # 1. never handed and older than a lease: the send task was lost -> retry now.
        lost = list(
            session.scalars(
                update(Delivery)
                .where(
                    Delivery.status == CLAIMED,
                    Delivery.retry_at.is_not(None),
                    Delivery.retry_at < stale,
                )
                .values(status=RETRY, retry_at=now, updated_at=now)
                .returning(Delivery.id)
            )
        )
        report.requeued = len(lost)
        # 2. handed, outcome unknown.
        unknown = session.execute(
            select(Delivery.id, Delivery.updated_at, Delivery.crashes)
            .where(
                Delivery.status == CLAIMED,
                Delivery.retry_at.is_(None),
                Delivery.updated_at < stale,
            )
            .limit(10_000)
        ).all()
        resend: list[int] = []
        for delivery_id, updated, crashes in unknown:
            message_id = None
            if settings.mail_backend == "outbox":
                message_id = _outbox_message_id(Path(settings.outbox_dir), delivery_id)
            if message_id is not None:
                confirm_sent(session, delivery_id, message_id, now, changes)
                report.confirmed_sent += 1
            elif crashes >= MAX_CRASHES:  # poison: its send keeps killing the process
                _settle(session, delivery_id, now, changes, FAILED, error=POISON_NOTE)
                log.error("delivery %s failed: %s", delivery_id, POISON_NOTE)
                report.poisoned += 1
            elif settings.mail_backend == "outbox" or updated < now - UNKNOWN_RESEND_AFTER:
                resend.append(delivery_id)
            else:
                report.unknown += 1
        if resend:
            session.execute(
                update(Delivery)
                .where(Delivery.id.in_(resend), Delivery.status == CLAIMED)
                .values(
                    status=RETRY,
                    retry_at=now,
                    updated_at=now,
                    last_error=RESENT_NOTE,
                )
            )
            report.resent = len(resend)
        # 3. enrollments for these rows, and any active enrollment overdue but not queued.
        touched = lost + resend
        for start in range(0, len(touched), 1000):
            rows = session.execute(
                select(Enrollment.id)
                .join(
                    Delivery,
                    and_(
                        Delivery.subscriber_id == Enrollment.subscriber_id,
                        Delivery.series_id == Enrollment.series_id,
                    ),
                )
                .where(Delivery.id.in_(touched[start : start + 1000]))
            ).all()
            changes.extend((eid, now) for (eid,) in rows)
        overdue = session.execute(
            select(Enrollment.id)
            .join(Subscriber, Subscriber.id == Enrollment.subscriber_id)
            .join(Series, Series.id == Enrollment.series_id)
            .where(
                Enrollment.state == ENROLLED_ACTIVE,
                Enrollment.next_due_at <= now - dt.timedelta(minutes=10),
                Subscriber.status == ACTIVE,
                Series.state == LIVE,
            )
            .limit(10_000)
        ).all()
        if overdue:
            leased = set(queue.redis.zrange(queue.lease_key, 0, -1))
            candidates = [eid for (eid,) in overdue if str(eid) not in leased]
            pipe = queue.redis.pipeline(transaction=False)
            for eid in candidates:
                pipe.zscore(queue.due_key, str(eid))
            scores = pipe.execute() if candidates else []
            missing = [eid for eid, score in zip(candidates, scores, strict=True) if score is None]
            changes.extend((eid, now) for eid in missing)
            report.overdue_requeued = len(missing)
    queue.apply(changes)
    return report


def confirm_sent(
    session: Session,
    delivery_id: int,
    message_id: str,
    now: dt.datetime,
    changes: list[tuple[int, dt.datetime | None]],
) -> None:
    """A handed row turned out to be sent: mark it and advance its enrollment."""
    _settle(session, delivery_id, now, changes, SENT, message_id=message_id)


def _settle(
    session: Session,
    delivery_id: int,
    now: dt.datetime,
    changes: list[tuple[int, dt.datetime | None]],
    status: str,
    *,
    message_id: str | None = None,
    error: str | None = None,
) -> None:
    """A handed row's outcome, found after the fact (sent, or failed as poison): record it
    and move the reader on to the next part, as send_chunk would have."""
    d = session.get(Delivery, delivery_id)
    if d is None or d.status != CLAIMED or d.subscriber_id is None:
        return
    d.status, d.updated_at = status, now
    if status == SENT:
        d.provider_message_id, d.sent_at = message_id, now
    else:
        d.last_error = error
    enr = session.scalar(
        select(Enrollment).where(
            Enrollment.subscriber_id == d.subscriber_id, Enrollment.series_id == d.series_id
        )
    )
    sub = session.get(Subscriber, d.subscriber_id)
    series = session.get(Series, d.series_id)
    if enr is None or sub is None or series is None or enr.next_part != d.part_number:
        return
    counts = schedule.part_counts(session)
    _advance(session, enr, sub, series, counts.get(series.id, 0), d.scheduled_for, now, changes)


_confirm_sent = confirm_sent  # the name events.py looked up first


def counts_by_status(session: Session) -> dict[str, int]:
    rows = session.execute(select(Delivery.status, func.count()).group_by(Delivery.status))
    return {status: n for status, n in rows}
