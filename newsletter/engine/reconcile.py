"""Reconciliation: settle rows stuck in `claimed`, rebuild a lost Redis, re-queue overdue readers.

A handed row (claimed, retry_at NULL) has an unknown outcome and is never blindly resent: the
outbox's .eml file, or the provider's `processed` event (engine.events -> `confirm_sent`), marks
it sent; the provider's events for later mail with none for its chunk (engine.absence) mark it
never taken after the settle window, and it is resent at once (ABSENT_NOTE); with no evidence
either way after UNKNOWN_RESEND_AFTER it is resent once and its last_error says so (RESENT_NOTE);
a row whose send killed its process MAX_CRASHES times is failed (POISON_NOTE).
"""

from __future__ import annotations

import datetime as dt
import email.parser
import logging
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from newsletter.core.config import Settings
from newsletter.engine import absence, schedule
from newsletter.engine.absence import ABSENT_NOTE, UNKNOWN_RESEND_AFTER
from newsletter.engine.advance import advance
from newsletter.queue.dueset import RedisQueue
from newsletter.store import ledger, webhook_posts
from newsletter.store.db import session_scope
from newsletter.store.ledger import RESENT_NOTE, QueueChange
from newsletter.store.models import (
    ACTIVE,
    ENROLLED_ACTIVE,
    FAILED,
    LIVE,
    SENT,
    Enrollment,
    Series,
    Subscriber,
    utcnow,
)

__all__ = [
    "ABSENT_NOTE",
    "MAX_CRASHES",
    "POISON_NOTE",
    "RESENT_NOTE",
    "UNKNOWN_RESEND_AFTER",
    "ReconcileReport",
    "Waiting",
    "confirm_sent",
    "reconcile",
    "waiting_for_provider",
]

log = logging.getLogger(__name__)

# A row whose send killed its process this many times is failed, so it can't block a batch.
MAX_CRASHES = 3
POISON_NOTE = f"sending it stopped the sending process {MAX_CRASHES} times; not sent"


@dataclass
class ReconcileReport:
    rebuilt: bool = False
    requeued: int = 0  # claimed but never handed (task lost): back to retry
    confirmed_sent: int = 0  # handed, outcome unknown, evidence found that it went out
    resent: int = 0  # handed, no evidence after 24 h: retried
    absent: int = 0  # handed, never taken by the provider (engine.absence): retried at once
    unknown: int = 0  # handed, waiting for a provider event
    overdue_requeued: int = 0
    poisoned: int = 0  # its send killed the sending process MAX_CRASHES times: failed

    def as_dict(self) -> dict[str, int]:
        return {key: int(value) for key, value in asdict(self).items()}


def reconcile(
    settings: Settings, now: dt.datetime | None = None, queue: RedisQueue | None = None
) -> ReconcileReport:
    """Settle rows stuck in `claimed`, rebuild a lost Redis, re-queue overdue enrollments."""
    now = now or utcnow()
    queue = queue or RedisQueue(settings)
    report = ReconcileReport()
    stale = now - dt.timedelta(seconds=settings.lease_seconds)
    changes: list[QueueChange] = []
    with session_scope(settings.database_url) as session:
        report.rebuilt = queue.ensure(session)
        lost = ledger.requeue_lost(session, stale, now)
        report.requeued = len(lost)
        resend, absent = _settle_handed(settings, session, stale, now, changes, report)
        ledger.resend(session, resend, now)
        ledger.resend(session, absent, now, note=ABSENT_NOTE)
        report.resent, report.absent = len(resend), len(absent)
        if absent:
            log.warning("%d handed rows never taken by the provider: sent again", len(absent))
        webhook_posts.forget_posts_before(
            session, now - UNKNOWN_RESEND_AFTER - dt.timedelta(hours=1)
        )
        _requeue_readers(session, lost + resend + absent, now, changes)
        report.overdue_requeued = _requeue_overdue(session, queue, now, changes)
    queue.apply(changes)
    return report


def _settle_handed(
    settings: Settings,
    session: Session,
    stale: dt.datetime,
    now: dt.datetime,
    changes: list[QueueChange],
    report: ReconcileReport,
) -> tuple[list[int], list[int]]:
    """Handed rows older than a lease, outcome unknown: sent (evidence in the outbox), failed
    (poison), to resend (outbox without its file, no provider event after 24 h, or never taken
    by the provider: engine.absence), or still waiting. The rows to resend: (24 h, absent)."""
    unknown = ledger.handed_before(session, stale)
    resend: list[int] = []
    waiting: dict[dt.datetime, list[int]] = defaultdict(list)  # chunk (hand-over time) -> rows
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
            waiting[updated].append(delivery_id)
    absent = _never_taken(settings, session, waiting, now)
    report.unknown = sum(len(rows) for rows in waiting.values()) - len(absent)
    return resend, absent


def _never_taken(
    settings: Settings, session: Session, waiting: dict[dt.datetime, list[int]], now: dt.datetime
) -> list[int]:
    """The rows of the waiting chunks the absence rule says the provider never took."""
    verdicts = _verdicts(settings, session, waiting)
    return [
        i
        for handed_at, rows in waiting.items()
        if verdicts[handed_at].absent and verdicts[handed_at].due(now)
        for i in rows
    ]


def _verdicts(
    settings: Settings, session: Session, waiting: dict[dt.datetime, list[int]]
) -> dict[dt.datetime, absence.Verdict]:
    """engine.absence's verdict for each waiting chunk (its rows by hand-over time)."""
    if not waiting:
        return {}
    window = dt.timedelta(minutes=settings.settle_window_minutes)
    with_events = webhook_posts.rows_with_events(
        session, [i for rows in waiting.values() for i in rows]
    )
    posts = [
        absence.Post(
            p.received_at,
            p.status is not None and 200 <= p.status < 300,
            p.newest_handed_at,
            p.body_hash,
        )
        for p in webhook_posts.posts_since(session, min(waiting))
    ]
    return {
        handed_at: absence.judge(handed_at, bool(with_events & set(rows)), posts, window)
        for handed_at, rows in waiting.items()
    }


@dataclass(frozen=True)
class Waiting:
    """Readers waiting for the provider's answer: how many, since when, and what happens next
    (the earliest chunk's verdict; reconcile acts at its first run after `next.resend_at`)."""

    readers: int
    since: dt.datetime
    next: absence.Verdict


def waiting_for_provider(settings: Settings, session: Session, now: dt.datetime) -> Waiting | None:
    """The handed rows (outcome unknown) and when they are sent again if no answer comes; None
    when no reader waits. Rows handed less than a lease ago are mid-request, not counted."""
    lease = dt.timedelta(seconds=settings.lease_seconds)
    waiting: dict[dt.datetime, list[int]] = defaultdict(list)
    for delivery_id, handed_at, _ in ledger.handed_before(
        session, now - min(lease, dt.timedelta(minutes=1))
    ):
        waiting[handed_at].append(delivery_id)
    if not waiting:
        return None
    verdicts = _verdicts(settings, session, waiting)
    first = min(verdicts.values(), key=lambda v: v.resend_at)
    at = max(first.resend_at, min(waiting) + lease)  # reconcile looks at rows a lease old
    return Waiting(
        sum(len(rows) for rows in waiting.values()),
        min(waiting),
        absence.Verdict(at, first.absent, first.reason),
    )


def _outbox_message_id(outbox: Path, delivery_id: int) -> str | None:
    """The outbox's evidence that a row went out: its .eml file's Message-ID, or None."""
    for path in [*outbox.glob(f"*Z-{delivery_id}.eml"), *outbox.glob(f"*Z-{delivery_id}-*.eml")]:
        with path.open("rb") as fh:
            headers = email.parser.BytesHeaderParser().parse(fh)
        return str(headers.get("Message-ID", "")).strip("<>") or f"outbox:{path.name}"
    return None


def _requeue_readers(
    session: Session, touched: list[int], now: dt.datetime, changes: list[QueueChange]
) -> None:
    """The enrollments of rows turned back into retries: due now."""
    changes.extend((eid, now) for eid in ledger.enrollment_ids_of(session, touched))


def _requeue_overdue(
    session: Session, queue: RedisQueue, now: dt.datetime, changes: list[QueueChange]
) -> int:
    """Active enrollments overdue by 10 minutes that Redis neither holds as due nor leases:
    due now. Returns how many."""
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
    if not overdue:
        return 0
    leased = set(queue.redis.zrange(queue.lease_key, 0, -1))
    candidates = [eid for (eid,) in overdue if str(eid) not in leased]
    pipe = queue.redis.pipeline(transaction=False)
    for eid in candidates:
        pipe.zscore(queue.due_key, str(eid))
    scores = pipe.execute() if candidates else []
    missing = [eid for eid, score in zip(candidates, scores, strict=True) if score is None]
    changes.extend((eid, now) for eid in missing)
    return len(missing)


def confirm_sent(
    session: Session,
    delivery_id: int,
    message_id: str,
    now: dt.datetime,
    changes: list[QueueChange],
) -> None:
    """A handed row turned out to be sent: mark it and advance its enrollment."""
    _settle(session, delivery_id, now, changes, SENT, message_id=message_id)


def _settle(
    session: Session,
    delivery_id: int,
    now: dt.datetime,
    changes: list[QueueChange],
    status: str,
    *,
    message_id: str | None = None,
    error: str | None = None,
) -> None:
    """A handed row's outcome, found after the fact (sent, or failed as poison): record it
    and move the reader on to the next part, as send_chunk would have."""
    d = ledger.settle_handed(session, delivery_id, status, now, message_id=message_id, error=error)
    if d is None:
        return
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
    advance(session, enr, sub, series, counts.get(series.id, 0), d.scheduled_for, now, changes)
