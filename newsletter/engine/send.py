"""Sending one chunk: claimed rows -> handed to the provider -> sent / retry / failed / unknown.

`send_chunk(settings, chunk, now)` re-checks suppression, subscriber and series state, renders
the article once, hands recipients to the backend, records each outcome and advances
enrollments. Each step is one transition of the ledger (see store.ledger, which writes it):
- claimed -> (deleted)   rows that must not be sent (unsubscribed, suppressed, series or
                         subscriber paused, stale) are forgotten while still un-handed, so a
                         later resubscribe or resume sends the part then;
- claimed -> retry       sending is halted, or the article failed to render (a fault of the
                         email templates halts sending: the practice's to fix, not a reader's);
- claimed -> handed      compare-and-set, committed before the provider is called;
- handed -> sent         accepted; the enrollment moves to the next part;
- handed -> failed       permanent for this address; the enrollment moves on too, so one bad
                         address never blocks a cursor;
- handed -> retry        the provider pushed back (429, 5xx, refused connection) or a halt
                         (refused credentials, or the practice's own settings can't make a
                         message: never a failed row, the reader stays at the part);
- handed (unknown)       no answer: stays handed for `reconcile` (the provider's event, or a
                         resend once after UNKNOWN_RESEND_AFTER).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import and_, select
from sqlalchemy.orm import Session

from newsletter.core import timing
from newsletter.core.config import Settings
from newsletter.core.identity import email_hash, rekey
from newsletter.engine import schedule
from newsletter.engine.advance import advance, due_time
from newsletter.engine.plan import Chunk
from newsletter.engine.summary import TickSummary
from newsletter.mail import backends
from newsletter.mail.message import (
    CREDENTIALS,
    TEMPLATE,
    Accepted,
    Failed,
    Message,
    Outcome,
    RetryLater,
    SendingHalted,
    Unknown,
)
from newsletter.mail.recipient import recipient_maker
from newsletter.mail.render import shared_renderer
from newsletter.mail.templates import template_fault
from newsletter.queue.dueset import RedisQueue
from newsletter.store.db import session_scope
from newsletter.store.halt import halt, halted, templates_fingerprint
from newsletter.store.ledger import (
    PERSON_COLUMNS,
    LedgerRow,
    Move,
    OutcomeRow,
    PersonRow,
    PlaceRow,
    QueueChange,
    SentRow,
    UnknownRow,
    among,
    back_to_retry,
    claimed_rows,
    forget_claimed,
    hand_over,
    note_unknown,
    record_chunk,
    set_due,
)
from newsletter.store.models import (
    ACTIVE,
    ENROLLED_ACTIVE,
    FAILED,
    LIVE,
    RETRY,
    Enrollment,
    Part,
    Series,
    Subscriber,
    Suppression,
    utcnow,
)

log = logging.getLogger(__name__)

RENDER_RETRY = dt.timedelta(hours=1)

Row = tuple[LedgerRow, PersonRow, PlaceRow]


@dataclass
class _Article:
    """The chunk's series and part (None when gone), and the part counts schedule needs."""

    series: Series | None
    part: Part | None
    counts: dict[int, int]
    count: int  # parts in this series


@dataclass
class _Outcomes:
    """The provider's answers sorted into the ledger and enrollment writes they cause."""

    sent_rows: list[SentRow] = field(default_factory=list)
    other_rows: list[OutcomeRow] = field(default_factory=list)  # failed and retry
    unknown_rows: list[UnknownRow] = field(default_factory=list)  # handed: the reason only
    moved: list[Move] = field(default_factory=list)  # (enrollment id, next part, due)
    retries: list[tuple[int, dt.datetime]] = field(default_factory=list)  # (enrollment, due)
    first_sent: bool = False


def _is_halted(session: Session, settings: Settings) -> bool:
    """Halted for the API key these settings name (a new key lifts a halt by itself)."""
    return halted(session, settings) is not None


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
    now = now or utcnow()
    queue = queue or RedisQueue(settings)
    summary = TickSummary()
    redis_changes: list[QueueChange] = []
    ids = list(chunk.delivery_ids)
    with session_scope(settings.database_url) as session:
        article = _read_article(session, chunk)
        rows = claimed_rows(session, ids)
        if not rows:
            return summary
        if _is_halted(session, settings):  # leave everything retryable for when sending resumes
            back = back_to_retry(session, [d.id for d, _, _ in rows], now, now)
            summary.retry += len(back)
            queue.release([e.id for d, _, e in rows if d.id in back], now)
            return summary
        keep = _forget_unsendable(
            session, settings.secret, article, rows, now, redis_changes, summary
        )
        if not keep:
            session.commit()
            queue.apply(redis_changes)
            return summary
        series, part = article.series, article.part
        assert series is not None and part is not None
        message = _render(settings, session, article, keep, now, redis_changes, summary)
        if message is None:
            session.commit()
            queue.apply(redis_changes)
            return summary
        keep = _hand_over(session, keep, ids, now)
        if not keep:
            queue.apply(redis_changes)
            return summary
        make = recipient_maker(settings)  # the signing keys once per chunk
        recipients = [make(d.id, sub.public_id, sub.email, sub.name) for d, sub, _ in keep]
        if before_send is not None:
            before_send([d.id for d, _, _ in keep])
        halted_reason: str | None = None
        refused_key: str | None = None
        halt_kind = CREDENTIALS
        try:
            # looked up on the module at call time (tests swap get_backend there)
            outcomes: list[Outcome] = backends.get_backend(settings).send(message, recipients)
        except SendingHalted as exc:
            halted_reason, refused_key, halt_kind = exc.reason, exc.fingerprint, exc.kind
            outcomes = list(exc.outcomes)
        keep = _latest_preferences(session, keep)
        sorted_ = _sort_outcomes(
            session, article, keep, outcomes, halted_reason is not None, now, redis_changes, summary
        )
        _write_outcomes(session, sorted_, part, now)
        if halted_reason is not None:
            halt(session, halted_reason, refused_key, halt_kind)
    queue.apply(redis_changes)
    return summary


def _read_article(session: Session, chunk: Chunk) -> _Article:
    """The chunk's series and part in one SELECT (either None when gone), and the part counts."""
    found = session.execute(
        select(Series, Part)
        .outerjoin(Part, and_(Part.series_id == Series.id, Part.number == chunk.part_number))
        .where(Series.id == chunk.series_id)
    ).first()
    series, part = (None, None) if found is None else found
    counts = schedule.part_counts(session)
    return _Article(series, part, counts, counts.get(chunk.series_id, 0))


def _forget_unsendable(
    session: Session,
    secret: str,
    article: _Article,
    rows: list[Row],
    now: dt.datetime,
    redis_changes: list[QueueChange],
    summary: TickSummary,
) -> list[Row]:
    """claimed -> deleted for rows that must not be sent now (suppression wins, checked at
    send time); never handed to anyone, so a later resume can send the part. The rest."""
    series, part = article.series, article.part
    hashes = [email_hash(s.email) for _, s, _ in rows]
    keyed = {rekey(secret, h): h for h in hashes}  # suppressions are stored keyed (or plain, old)
    suppressed = {
        keyed.get(k, k)
        for k in session.scalars(
            select(Suppression.email_hash).where(
                among(session, Suppression.email_hash, [*hashes, *keyed])
            )
        )
    }
    keep: list[Row] = []
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
                sub.paused_until is None or timing.local_date(now, sub.timezone) >= sub.paused_until
            )
        )
        if ok:
            keep.append((d, sub, enr))
        else:
            drop.append(d.id)
            redis_changes.append((enr.id, due_time(enr, sub) if sub.status == ACTIVE else None))
    if drop:
        forget_claimed(session, drop)
        summary.skipped += len(drop)
    return keep


def _render(
    settings: Settings,
    session: Session,
    article: _Article,
    keep: list[Row],
    now: dt.datetime,
    redis_changes: list[QueueChange],
    summary: TickSummary,
) -> Message | None:
    """The article, rendered once for the chunk; None when it can't be (nothing is sent or
    advanced). A fault of the email templates (the practice's to fix) halts sending, the rows
    due again once the halt lifts; any other error retries the rows in RENDER_RETRY."""
    series, part = article.series, article.part
    assert series is not None and part is not None
    try:
        return shared_renderer(settings).article(series, part, article.count)
    except Exception as exc:  # a template error must not advance or send anything
        folder = Path(settings.templates_dir)
        problem = template_fault(exc, folder)
        if problem is not None:
            reason = f"an email template can't be rendered: {problem}"
            log.error("rendering %s part %s: %s", series.slug, part.number, reason)
            back = back_to_retry(session, [d.id for d, _, _ in keep], now, now, reason[:500])
            redis_changes.extend((enr.id, now) for d, _, enr in keep if d.id in back)
            summary.retry += len(back)
            halt(session, reason, templates_fingerprint(folder), TEMPLATE)
            return None
        log.exception("rendering %s part %s failed", series.slug, part.number)
        retry_at = now + RENDER_RETRY
        back = back_to_retry(
            session, [d.id for d, _, _ in keep], retry_at, now, f"render: {exc}"[:500]
        )
        reset = [(enr.id, retry_at) for d, _, enr in keep if d.id in back]
        set_due(session, reset)
        redis_changes.extend(reset)
        summary.retry += len(reset)
        return None


def _hand_over(session: Session, keep: list[Row], ids: list[int], now: dt.datetime) -> list[Row]:
    """claimed -> handed (store.ledger.hand_over), committed: only the process that flips a row
    may call the provider for it. The rows this process now holds."""
    handed = hand_over(session, [d.id for d, _, _ in keep], ids, now)
    session.commit()
    return [row for row in keep if row[0].id in handed]


def _latest_preferences(session: Session, keep: list[Row]) -> list[Row]:
    """Preferences saved while the provider call ran (pause, cadence, time zone, status)
    decide the next slot, not the values read before it: re-read them (one SELECT), locked
    until the advance commits; a save in progress (subscribers.lock) finishes first."""
    latest = {
        row[0]: PersonRow(*row)
        for row in session.execute(
            select(*PERSON_COLUMNS)
            .where(among(session, Subscriber.id, [s.id for _, s, _ in keep]))
            .order_by(Subscriber.id)
            .with_for_update()
        )
    }
    return [(d, latest.get(s.id, s), e) for d, s, e in keep]


def _sort_outcomes(
    session: Session,
    article: _Article,
    keep: list[Row],
    outcomes: list[Outcome],
    halted_now: bool,
    now: dt.datetime,
    redis_changes: list[QueueChange],
    summary: TickSummary,
) -> _Outcomes:
    """Each handed row's outcome -> sent / failed (the reader advances), unknown (stays handed
    for reconcile), retry (rows past a halt, or the provider pushed back)."""
    series, count, counts = article.series, article.count, article.counts
    assert series is not None
    out = _Outcomes()
    last = [e.id for _, _, e in keep if e.next_part + 1 > count]
    if last:  # schedule.advance finishes these: load their ORM objects in one SELECT
        session.scalars(select(Enrollment).where(among(session, Enrollment.id, last))).all()
    for i, (d, sub, enr) in enumerate(keep):
        outcome: Outcome | None = outcomes[i] if i < len(outcomes) else None
        if isinstance(outcome, Accepted):
            out.sent_rows.append(SentRow(d.id, outcome.message_id[:200]))
            out.first_sent = True
            advance(
                session, enr, sub, series, count, d.scheduled_for, now, redis_changes, counts,
                out.moved,
            )  # fmt: skip
            summary.sent += 1
        elif isinstance(outcome, Failed):
            out.other_rows.append(OutcomeRow(d.id, FAILED, None, outcome.reason[:1000]))
            advance(
                session, enr, sub, series, count, d.scheduled_for, now, redis_changes, counts,
                out.moved,
            )  # fmt: skip
            summary.failed += 1
        elif isinstance(outcome, Unknown):
            # handed, no answer: stays handed (claimed, retry_at NULL) for reconcile; out
            # of the due set meanwhile (reconcile puts it back once settled)
            out.unknown_rows.append(UnknownRow(d.id, f"outcome unknown: {outcome.reason}"[:1000]))
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
            out.other_rows.append(OutcomeRow(d.id, RETRY, at, reason[:1000]))
            out.retries.append((enr.id, at))
            redis_changes.append((enr.id, now if halted_now else at))
            summary.retry += 1
    return out


def _write_outcomes(session: Session, out: _Outcomes, part: Part, now: dt.datetime) -> None:
    """The sorted outcomes, in bulk: enrollments due again, the ledger rows recorded with the
    moves they cause (one statement on PostgreSQL), unknown outcomes noted, the part's first
    send stamped (only while the part read at the start had none: a later chunk skips it)."""
    set_due(session, out.retries)
    first = part if out.first_sent and part.first_sent_at is None else None
    record_chunk(session, out.sent_rows, out.other_rows, out.moved, now, first)
    note_unknown(session, out.unknown_rows)
