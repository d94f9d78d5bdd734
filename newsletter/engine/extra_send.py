"""Sending extra sends (a part again, a correction): claimed -> handed -> sent / failed.

The same steps as an article's (store.ledger.extras writes each): nothing goes while sending is
halted (the rows are marked failed, "not sent": she clicks again later), the hand-over is a compare-and-set committed before the
provider is called, a refused key halts sending as the engine does for articles. The part is
rendered from the database, so a corrected part goes out corrected. An extra send never moves
a reader's place.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from dataclasses import dataclass

from sqlalchemy import select

from newsletter.core.config import Settings
from newsletter.engine import schedule
from newsletter.mail import backends
from newsletter.mail.message import Accepted, Failed, Message, Outcome, SendingHalted, Unknown
from newsletter.mail.recipient import recipient
from newsletter.mail.render import shared_renderer
from newsletter.store.db import session_scope
from newsletter.store.halt import halt, halted
from newsletter.store.ledger import extras
from newsletter.store.models import ACTIVE, Part, Series, Subscriber

log = logging.getLogger(__name__)

CORRECTION_PREFIX = "Corrected: "


@dataclass(frozen=True)
class ExtraReport:
    """What one call did: rows sent, failed, left for later (halted / pushed back), unknown."""

    sent: int = 0
    failed: int = 0
    later: int = 0
    unknown: int = 0
    halted: str | None = None


def _message(settings: Settings, series: Series, part: Part, count: int, kind: str) -> Message:
    message = shared_renderer(settings).article(series, part, count)
    if kind == extras.CORRECTION:
        return dataclasses.replace(message, subject=f"{CORRECTION_PREFIX}{message.subject}")
    return message


def send_extras(settings: Settings, ids: list[int], now: dt.datetime) -> ExtraReport:
    """Send these extra rows, one by one (a handful: one reader, or one part's readers)."""
    counts: dict[str, int] = {"sent": 0, "failed": 0, "later": 0, "unknown": 0}
    with session_scope(settings.database_url) as session:
        current = halted(session, settings)
        if current is not None:
            extras.give_up(session, ids, now, f"not sent: sending is stopped ({current.reason})")
            return ExtraReport(later=len(ids), halted=current.reason)
    for index, extra_id in enumerate(ids):
        said, reason = _send_one(settings, extra_id, now)
        counts[said] += 1
        if reason is not None:
            with session_scope(settings.database_url) as session:
                rest = ids[index + 1 :]
                extras.give_up(session, rest, now, f"not sent: sending is stopped ({reason})")
            counts["later"] += len(ids) - index - 1
            return _report(counts, reason)
    return _report(counts, None)


def _report(counts: dict[str, int], halted_reason: str | None) -> ExtraReport:
    return ExtraReport(
        counts["sent"], counts["failed"], counts["later"], counts["unknown"], halted_reason
    )


def _send_one(settings: Settings, extra_id: int, now: dt.datetime) -> tuple[str, str | None]:
    """One row: (what came of it, the halt's reason when the provider refused our key)."""
    with session_scope(settings.database_url) as session:
        if not extras.hand_over_extra(session, extra_id, now):
            return "later", None  # another process has it, or it is settled
        [row] = extras.extras_by_id(session, [extra_id])
        sub = session.get(Subscriber, row.subscriber_id) if row.subscriber_id else None
        series = session.get(Series, row.series_id)
        part_row = session.scalar(
            select(Part).where(Part.series_id == row.series_id, Part.number == row.part_number)
        )
        if sub is None or sub.status != ACTIVE or series is None or part_row is None:
            extras.record_extra(
                session, extra_id, False, now, error="not sent: not an active reader"
            )
            return "failed", None
        count = schedule.part_counts(session).get(series.id, 0)
        message = _message(settings, series, part_row, count, row.kind)
        target = recipient(settings, f"extra-{extra_id}", sub.public_id, sub.email, sub.name)
    halted_reason: str | None = None
    try:
        outcomes: list[Outcome] = backends.get_backend(settings).send(message, [target])
    except SendingHalted as exc:
        outcomes = list(exc.outcomes)
        halted_reason = exc.reason
        with session_scope(settings.database_url) as session:
            halt(session, exc.reason, exc.fingerprint, exc.kind)
    outcome = outcomes[0] if outcomes else None
    with session_scope(settings.database_url) as session:
        if isinstance(outcome, Accepted):
            extras.record_extra(session, extra_id, True, now, message_id=outcome.message_id)
            return "sent", halted_reason
        if isinstance(outcome, Failed):
            extras.record_extra(session, extra_id, False, now, error=outcome.reason)
            return "failed", halted_reason
        if isinstance(outcome, Unknown):
            log.warning("extra send %s: outcome unknown (%s)", extra_id, outcome.reason)
            return "unknown", halted_reason
        why = halted_reason or getattr(outcome, "reason", "no answer")
        extras.give_up(session, [extra_id], now, f"not sent: {why}")
        return "later", halted_reason
