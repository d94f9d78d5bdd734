"""The chaos suite's judge: the ledger (deliveries) against what the provider really accepted.

`check(...)` collects every broken invariant (not just the first) and fails with a summary:
- every CLI command exited 0, or non-zero saying another tick holds the lock (documented);
- nobody lost: every due subscriber got each expected part at least once (provider's record);
- no part twice, except one documented resend (the ledger row's last_error says why);
- nothing beyond the expected parts went out;
- the ledger's `sent` rows are exactly the accepted mails (same row id, address, series, part);
- parts in order (part n+1 accepted after part n) and a cadence apart (ledger scheduled_for);
- no row left in `claimed` after recovery;
- each reader's kept waiting queue (waiting_queues) equals a recount of their queued places;
- the stand-in found no schema problem in any request body.
"""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from engine_support import kept_queues, recount_queues
from sqlalchemy import select

from newsletter.store.db import session_scope
from newsletter.store.models import CLAIMED, SENT, Delivery, Series, Subscriber

# last_error of a row that was sent again after an unknown outcome must say so
RESEND_REASON = re.compile(r"unknown|resen|sent again|no evidence", re.IGNORECASE)
LOCK_HELD = re.compile(r"lock", re.IGNORECASE)


@dataclass(frozen=True)
class Mail:
    """One mail the provider accepted: who, which ledger row, which article, in what order."""

    email: str
    delivery_id: int
    series: str
    part: int
    order: int  # position in the provider's record (request index, message index)


@dataclass(frozen=True)
class CliResult:
    args: tuple[str, ...]
    code: int
    out: str
    err: str

    @property
    def killed(self) -> bool:
        return self.code == -9

    def describe(self) -> str:
        return f"`{' '.join(self.args)}` exited {self.code}: {(self.err or self.out)[-800:]}"


@dataclass(frozen=True)
class Row:
    id: int
    email: str
    series: str
    part: int
    status: str
    scheduled_for: dt.datetime
    sent_at: dt.datetime | None
    last_error: str | None
    provider_message_id: str | None


def sendgrid_mails(requests: Iterable[object]) -> list[Mail]:
    """The stand-in's accepted requests -> one Mail per personalization."""
    mails: list[Mail] = []
    for index, request in enumerate(requests):
        for p in request.personalizations:  # type: ignore[attr-defined]
            args = p.get("custom_args") or {}
            if args.get("kind", "article") != "article" or "series" not in args:
                continue
            for to in p.get("to") or []:
                mails.append(
                    Mail(
                        str(to["email"]).lower(),
                        int(args["delivery_id"]),
                        str(args["series"]),
                        int(args["part"]),
                        index,
                    )
                )
    return mails


def ledger(database_url: str) -> list[Row]:
    with session_scope(database_url) as session:
        found = session.execute(
            select(
                Delivery.id,
                Subscriber.email,
                Series.slug,
                Delivery.part_number,
                Delivery.status,
                Delivery.scheduled_for,
                Delivery.sent_at,
                Delivery.last_error,
                Delivery.provider_message_id,
            )
            .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
            .join(Series, Series.id == Delivery.series_id)
            .order_by(Delivery.id)
        ).all()
    return [Row(r[0], r[1].lower(), *r[2:]) for r in found]


def check(
    database_url: str,
    mails: Sequence[Mail],
    *,
    due: Iterable[str],
    series: str,
    parts: int,
    results: Sequence[CliResult],
    problems: Sequence[str] = (),
    killed: int = 0,
    cadence: dt.timedelta = dt.timedelta(days=7),
) -> list[Row]:
    """Raise AssertionError listing every broken invariant; return the ledger for more checks.

    `killed`: how many commands the test SIGKILLed on purpose (their exit code is -9).
    """
    broken: list[str] = []
    rows = ledger(database_url)
    by_key = {(r.email, r.series, r.part): r for r in rows}
    by_id = {r.id: r for r in rows}

    # every command exited 0, or said another tick holds the lock
    kills = [r for r in results if r.killed]
    if len(kills) != killed:
        broken.append(f"{len(kills)} commands were killed, the test killed {killed}")
    for r in results:
        if r.killed or r.code == 0:
            continue
        if r.args[:1] == ("tick",) and LOCK_HELD.search(r.out + r.err):
            continue
        broken.append(r.describe())

    if problems:
        broken.append(f"the stand-in found bad request bodies: {list(problems)[:5]}")

    received: Counter[tuple[str, str, int]] = Counter((m.email, m.series, m.part) for m in mails)
    people = {e.lower() for e in due}
    expected = {(e, series, p) for e in people for p in range(1, parts + 1)}
    lost = sorted(k for k in expected if received[k] == 0)
    if lost:
        broken.append(f"{len(lost)} mails lost (never accepted), e.g. {lost[:3]}")
    extra = sorted(k for k in received if k not in expected)
    if extra:
        broken.append(f"{len(extra)} mails nobody was due, e.g. {extra[:3]}")
    twice = [k for k, n in received.items() if n > 1]
    undocumented = [
        k
        for k in twice
        if received[k] > 2
        or k not in by_key
        or not RESEND_REASON.search(by_key[k].last_error or "")
    ]
    if undocumented:
        k = undocumented[0]
        row = by_key.get(k)
        broken.append(
            f"{len(undocumented)} parts sent twice without a documented resend, e.g. {k} "
            f"x{received[k]} (ledger: {row.status if row else None}, "
            f"last_error {row.last_error if row else None!r})"
        )

    # the ledger's sent rows are exactly the accepted mails
    accepted_ids = {m.delivery_id for m in mails}
    for m in mails:
        row = by_id.get(m.delivery_id)
        if row is None or (row.email, row.series, row.part) != (m.email, m.series, m.part):
            broken.append(f"accepted mail {m} does not match its ledger row {row}")
            break
    sent_ids = {r.id for r in rows if r.status == SENT}
    not_sent = sorted({m.delivery_id for m in mails if m.delivery_id in by_id} - sent_ids)
    if not_sent:
        r = by_id[not_sent[0]]
        broken.append(
            f"{len(not_sent)} accepted mails are not `sent` in the ledger, e.g. row {r.id} "
            f"{r.status} (last_error {r.last_error!r})"
        )
    phantom = [r for r in rows if r.status == SENT and r.id not in accepted_ids]
    if phantom:
        broken.append(
            f"{len(phantom)} ledger rows say sent but the provider never accepted them, "
            f"e.g. {phantom[0]}"
        )
    stuck = [r for r in rows if r.status == CLAIMED]
    if stuck:
        broken.append(f"{len(stuck)} rows still claimed after recovery, e.g. {stuck[0]}")
    with session_scope(database_url) as session:
        kept, recounted = kept_queues(session), recount_queues(session)
    if kept != recounted:
        wrong = sorted(set(kept.items()) ^ set(recounted.items()))
        broken.append(f"kept waiting queues differ from a recount, e.g. {wrong[:2]}")

    # in order and a cadence apart
    first_order: dict[tuple[str, str, int], int] = {}
    last_order: dict[tuple[str, str, int], int] = defaultdict(int)
    for m in mails:
        key = (m.email, m.series, m.part)
        first_order.setdefault(key, m.order)
        last_order[key] = max(last_order[key], m.order)
    disorder = 0
    spacing: list[str] = []
    for email in people:
        for p in range(2, parts + 1):
            now_key, before_key = (email, series, p), (email, series, p - 1)
            seen = now_key in first_order and before_key in last_order
            if seen and first_order[now_key] <= last_order[before_key]:
                disorder += 1
            a, b = by_key.get(before_key), by_key.get(now_key)
            if a and b and b.scheduled_for - a.scheduled_for != cadence:
                spacing.append(
                    f"{email}: part {p - 1} {a.scheduled_for}, part {p} {b.scheduled_for}"
                )
            if a and b and a.sent_at and b.sent_at and b.sent_at <= a.sent_at:
                spacing.append(f"{email}: part {p} sent_at {b.sent_at} <= part {p - 1} {a.sent_at}")
    if disorder:
        broken.append(f"{disorder} times part n+1 reached the provider before part n")
    if spacing:
        broken.append(f"{len(spacing)} parts not a cadence apart, e.g. {spacing[:2]}")

    assert not broken, "invariants broken:\n- " + "\n- ".join(broken)
    return rows
