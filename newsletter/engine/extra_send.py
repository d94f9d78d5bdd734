"""Sending extra sends (a part again, a correction): claimed -> handed -> sent / failed.

The same steps as an article's (store.ledger.extras writes each): nothing goes while sending is
halted (the rows are marked failed, "not sent": she clicks again later), the hand-over is a
compare-and-set committed before the provider is called, a refused key halts sending as the
engine does for articles. In batches as articles go: a batch's hand-over is one statement, its
part rendered once and sent in one provider call (a correction to 2,000 readers was 2,000 calls
and 16,000 statements, 31 s on SQLite). The part is rendered from the database, so a corrected
part goes out corrected. An extra send never moves a reader's place.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from collections import Counter, defaultdict
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from newsletter.core.config import Settings
from newsletter.engine import schedule
from newsletter.mail import backends
from newsletter.mail.message import Accepted, Failed, Message, Outcome, SendingHalted, Unknown
from newsletter.mail.recipient import recipient_maker
from newsletter.mail.render import shared_renderer
from newsletter.store.db import session_scope
from newsletter.store.halt import halt, halted
from newsletter.store.ledger import extras
from newsletter.store.models import Part, Series

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
    """Send these extra rows in batches of `batch_size` (one reader's, or every reader of a
    part: a correction to 30,000 is 30 batches): each batch handed over by one compare-and-set
    and committed, one provider call per part and kind, its answers recorded together."""
    counts: Counter[str] = Counter()
    with session_scope(settings.database_url) as session:
        current = halted(session, settings)
        if current is not None:
            extras.give_up(session, ids, now, f"not sent: sending is stopped ({current.reason})")
            return ExtraReport(later=len(ids), halted=current.reason)
    size = settings.batch_size
    for start in range(0, len(ids), size):
        reason = _send_batch(settings, ids[start : start + size], now, counts)
        if reason is not None:
            counts["later"] += _stop_rest(settings, ids[start + size :], now, reason)
            return _report(counts, reason)
    return _report(counts, None)


def _report(counts: Counter[str], halted_reason: str | None) -> ExtraReport:
    return ExtraReport(
        counts["sent"], counts["failed"], counts["later"], counts["unknown"], halted_reason
    )


Group = tuple[int, int, str]  # series id, part number, kind: one message


def _send_batch(
    settings: Settings, ids: list[int], now: dt.datetime, counts: Counter[str]
) -> str | None:
    """One batch: handed over (committed), each part's message rendered once and sent to its
    readers, the answers recorded. The halt's reason when the provider refused our key."""
    groups: dict[Group, list[extras.Target]] = defaultdict(list)
    messages: dict[Group, Message] = {}
    with session_scope(settings.database_url) as session:  # committed before any call
        handed = extras.hand_over_extras(session, ids, now)
        gone: list[tuple[int, str]] = []
        for target in extras.targets(session, handed):
            if target.active:
                groups[(target.series_id, target.part_number, target.kind)].append(target)
            else:
                gone.append((target.id, NOT_ACTIVE))
        for group in list(groups):
            message = _group_message(session, settings, group)
            if message is None:
                gone.extend((t.id, NOT_ACTIVE) for t in groups.pop(group))
            else:
                messages[group] = message
        extras.record_extras(session, [], gone, now)
    counts["later"] += len(ids) - len(handed)  # another process has them, or they are settled
    counts["failed"] += len(gone)
    make = recipient_maker(settings)
    backend = backends.get_backend(settings)
    order = list(groups)
    for position, group in enumerate(order):
        readers = groups[group]
        halted_reason: str | None = None
        try:
            outcomes: list[Outcome] = backend.send(
                messages[group],
                [make(f"extra-{t.id}", t.public_id, t.email, t.name) for t in readers],
            )
        except SendingHalted as exc:
            outcomes = list(exc.outcomes)
            halted_reason = exc.reason
            with session_scope(settings.database_url) as session:
                halt(session, exc.reason, exc.fingerprint, exc.kind)
        _record(settings, readers, outcomes, halted_reason, now, counts)
        if halted_reason is not None:
            rest = [t.id for later in order[position + 1 :] for t in groups[later]]
            counts["later"] += _stop_rest(settings, rest, now, halted_reason)
            return halted_reason
    return None


NOT_ACTIVE = "not sent: not an active reader"


def _stop_rest(settings: Settings, ids: list[int], now: dt.datetime, reason: str) -> int:
    """After a refusal: these rows, not yet sent, fail as not sent; how many."""
    if ids:
        with session_scope(settings.database_url) as session:
            extras.give_up(session, ids, now, f"not sent: sending is stopped ({reason})")
    return len(ids)


def _group_message(session: Session, settings: Settings, group: Group) -> Message | None:
    """The message of one part and kind (None when the series or part is gone)."""
    series_id, number, kind = group
    series = session.get(Series, series_id)
    part_row = session.scalar(
        select(Part).where(Part.series_id == series_id, Part.number == number)
    )
    if series is None or part_row is None:
        return None
    count = schedule.part_counts(session).get(series.id, 0)
    return _message(settings, series, part_row, count, kind)


def _record(
    settings: Settings,
    readers: list[extras.Target],
    outcomes: list[Outcome],
    halted_reason: str | None,
    now: dt.datetime,
    counts: Counter[str],
) -> None:
    """One call's answers: sent and failed recorded, unknown left handed (never sent twice),
    the rest (pushed back, or after a refusal) failed as not sent: she can click again."""
    sent: list[tuple[int, str]] = []
    failed: list[tuple[int, str]] = []
    unknown: dict[str, list[int]] = defaultdict(list)
    later: dict[str, list[int]] = defaultdict(list)
    for index, target in enumerate(readers):
        outcome = outcomes[index] if index < len(outcomes) else None
        if isinstance(outcome, Accepted):
            sent.append((target.id, outcome.message_id))
        elif isinstance(outcome, Failed):
            failed.append((target.id, outcome.reason))
        elif isinstance(outcome, Unknown):
            unknown[outcome.reason].append(target.id)
        else:
            why = halted_reason or getattr(outcome, "reason", "no answer")
            later[f"not sent: {why}"].append(target.id)
    for reason, ids in unknown.items():
        log.warning(
            "%d extra sends (ids %s-%s): outcome unknown (%s)", len(ids), ids[0], ids[-1], reason
        )
    with session_scope(settings.database_url) as session:
        extras.record_extras(session, sent, failed, now)
        for reason, ids in later.items():
            extras.give_up(session, ids, now, reason)
    counts["sent"] += len(sent)
    counts["failed"] += len(failed)
    counts["unknown"] += sum(len(ids) for ids in unknown.values())
    counts["later"] += sum(len(ids) for ids in later.values())
