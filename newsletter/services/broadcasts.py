"""The therapist's broadcasts: write a one-off letter, choose its readers and time, list, cancel.

A broadcast is stored as a series of kind "broadcast" with one part, plus a `broadcasts` row
saying who and when; `engine.broadcasts` enrolls the readers, and from there the letter takes
the series' path (ledger, queue, render once, provider). See engine/broadcasts.py for the rules.

Audience (text form, shared by the CLI, the API and the admin page):
- `all`: every active reader;
- `series:SLUG[,SLUG…]`: active readers enrolled in any of these series;
- `joined-before:YYYY-MM-DD`: active readers who confirmed before that date (UTC).
When (`--at`): `now`; a date `YYYY-MM-DD` (each reader's usual slot that day, in their zone);
or a moment `YYYY-MM-DDTHH:MM` (with an offset like `+01:00`, or in NEWSLETTER_DEFAULT_TIMEZONE).
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from dataclasses import dataclass
from typing import cast

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from newsletter.content.series import PartSpec
from newsletter.core import timing
from newsletter.core.config import Settings
from newsletter.engine import broadcasts as engine
from newsletter.services.people import sync_queue
from newsletter.store.db import session_scope
from newsletter.store.models import (
    ACTIVE,
    BROADCAST_KIND,
    CANCELLED,
    CLAIMED,
    ENROLLED_ACTIVE,
    FAILED,
    LIVE,
    RETRY,
    SENT,
    Broadcast,
    Delivery,
    Enrollment,
    Part,
    Series,
    Subscriber,
)

MAX_DAYS_AHEAD = 3653
MAX_TITLE = 200
MAX_BODY = 100_000


class BroadcastError(Exception):
    """A broadcast request that can't be carried out; the message says why (one line)."""


@dataclass(frozen=True)
class Audience:
    kind: str  # all / series / joined_before
    series: tuple[str, ...] = ()
    before: dt.date | None = None

    def as_dict(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "series": list(self.series),
            "before": self.before.isoformat() if self.before else None,
        }

    def text(self) -> str:
        if self.kind == "series":
            return "series:" + ",".join(self.series)
        if self.kind == "joined_before":
            assert self.before is not None
            return f"joined-before:{self.before.isoformat()}"
        return "all"


@dataclass(frozen=True)
class When:
    timing: str  # engine.NOW / MOMENT / SLOT
    at: dt.datetime | None = None
    on_date: dt.date | None = None

    def text(self) -> str:
        if self.timing == engine.SLOT:
            assert self.on_date is not None
            return f"{self.on_date.isoformat()} at each reader's usual time"
        if self.timing == engine.MOMENT:
            assert self.at is not None
            return self.at.isoformat(timespec="minutes")
        return "now"


@dataclass(frozen=True)
class BroadcastInfo:
    """One broadcast as the CLI, API and admin show it."""

    id: int
    slug: str
    title: str
    audience: str
    when: str
    in_archive: bool
    state: str  # scheduled / sending / sent / cancelled
    recipients: int
    sent: int
    waiting: int
    failed: int
    created_at: dt.datetime

    def as_dict(self) -> dict[str, object]:
        out = dict(self.__dict__)
        out["created_at"] = self.created_at.isoformat()
        return out


def parse_audience(raw: str) -> Audience:
    value = (raw or "").strip()
    if value == "all":
        return Audience("all")
    kind, _, rest = value.partition(":")
    if kind == "series":
        slugs = tuple(s.strip() for s in rest.split(",") if s.strip())
        if not slugs:
            raise BroadcastError("audience series: needs series slugs, like series:myths")
        return Audience("series", series=slugs)
    if kind == "joined-before":
        try:
            return Audience("joined_before", before=dt.date.fromisoformat(rest.strip()))
        except ValueError:
            raise BroadcastError(
                f"audience joined-before: needs a date like 2026-03-01, got {rest!r}"
            ) from None
    raise BroadcastError(
        f"unknown audience {value!r}: use all, series:SLUG[,SLUG] or joined-before:YYYY-MM-DD"
    )


def parse_when(raw: str, settings: Settings, now: dt.datetime) -> When:
    value = (raw or "").strip()
    if value == "now":
        return When(engine.NOW)
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        try:
            day = dt.date.fromisoformat(value)
        except ValueError:
            raise BroadcastError(f"not a date: {value!r}") from None
        _check_range(day, now)
        return When(engine.SLOT, on_date=day)
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        raise BroadcastError(
            f"--at must be now, a date (2026-03-10) or a moment (2026-03-10T15:00), got {value!r}"
        ) from None
    try:
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=timing.zone_info(settings.default_timezone))
        moment = moment.astimezone(dt.UTC)
    except (OverflowError, ValueError):
        raise BroadcastError(f"--at: {value!r} is out of range") from None
    _check_range(moment.date(), now)
    return When(engine.MOMENT, at=moment)


def _check_range(day: dt.date, now: dt.datetime) -> None:
    if day < now.date() - dt.timedelta(days=1):
        raise BroadcastError(f"{day.isoformat()} is in the past; use now or a later date")
    if (day - now.date()).days > MAX_DAYS_AHEAD:
        raise BroadcastError(f"{day.isoformat()} is more than ten years away")


def _readers(session: Session, audience: Audience) -> list[tuple[int, str, dt.date | None]]:
    query = select(Subscriber.id, Subscriber.timezone, Subscriber.paused_until).where(
        Subscriber.status == ACTIVE
    )
    if audience.kind == "series":
        known = set(session.scalars(select(Series.slug).where(Series.slug.in_(audience.series))))
        missing = [s for s in audience.series if s not in known]
        if missing:
            raise BroadcastError(f"no series {missing[0]!r} (see `newsletter series list`)")
        readers = (
            select(Enrollment.subscriber_id)
            .join(Series, Series.id == Enrollment.series_id)
            .where(Series.slug.in_(audience.series), Enrollment.state != CANCELLED)
        )
        query = query.where(Subscriber.id.in_(readers))
    elif audience.kind == "joined_before":
        assert audience.before is not None
        cutoff = dt.datetime.combine(audience.before, dt.time(), tzinfo=dt.UTC)
        query = query.where(Subscriber.confirmed_at < cutoff)
    rows = session.execute(query.order_by(Subscriber.id)).all()
    return [cast("tuple[int, str, dt.date | None]", tuple(r)) for r in rows]


def _slug(session: Session, title: str, now: dt.datetime) -> str:
    ascii_title = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode()
    words = re.sub(r"[^a-z0-9]+", "-", ascii_title.lower()).strip("-")[:60].strip("-")
    base = f"letter-{now:%Y-%m-%d}" + (f"-{words}" if words else "")
    taken = set(session.scalars(select(Series.slug).where(Series.slug.like(f"{base}%"))))
    slug, n = base, 1
    while slug in taken:
        n += 1
        slug = f"{base}-{n}"
    return slug


def audience_count(settings: Settings, audience: Audience) -> int:
    """How many readers `audience` names now (the confirmation's "Send to 412 readers")."""
    with session_scope(settings.database_url) as session:
        return len(_readers(session, audience))


def check_letter(title: str, body_md: str) -> None:
    if not title.strip():
        raise BroadcastError("the letter needs a title")
    if len(title) > MAX_TITLE:
        raise BroadcastError(f"the title is longer than {MAX_TITLE} characters")
    if not body_md.strip():
        raise BroadcastError("the letter's text is empty")
    if len(body_md) > MAX_BODY:
        raise BroadcastError(f"the letter is longer than {MAX_BODY} characters")


def create(
    settings: Settings,
    letter: PartSpec,
    audience: Audience,
    when: When,
    *,
    in_archive: bool,
    now: dt.datetime,
) -> BroadcastInfo:
    """Store the letter and enroll its readers (they get it at `when`); Redis mirrored."""
    check_letter(letter.title, letter.body_md)
    with session_scope(settings.database_url) as session:
        readers = _readers(session, audience)
        first = when.at or now
        if when.on_date is not None:
            first = dt.datetime.combine(when.on_date, dt.time(9), tzinfo=dt.UTC)
        series = Series(
            slug=_slug(session, letter.title, now),
            title=letter.title,
            description=letter.summary,
            send_day=first.weekday(),
            send_time=f"{first:%H:%M}",
            order=1_000_000,
            state=LIVE,
            queued_at=now,
            kind=BROADCAST_KIND,
            in_archive=in_archive,
            content_hash=letter.content_hash,
            created_at=now,
            updated_at=now,
        )
        session.add(series)
        session.flush()
        session.add(
            Part(
                series_id=series.id,
                number=1,
                filename=letter.filename or "letter.md",
                title=letter.title,
                summary=letter.summary,
                body_md=letter.body_md,
                content_hash=letter.content_hash,
            )
        )
        ids = engine.enroll_readers(
            session, series, readers, when.timing, now, when.at, when.on_date
        )
        row = Broadcast(
            series_id=series.id,
            audience=audience.as_dict(),
            timing=when.timing,
            at=when.at if when.at is not None else (now if when.timing == engine.NOW else None),
            on_date=when.on_date,
            recipients=len(ids),
            created_at=now,
        )
        session.add(row)
        session.flush()
        broadcast_id = row.id
    sync_queue(settings, ids)
    found = get(settings, broadcast_id)
    assert found is not None
    return found


def cancel(settings: Settings, broadcast_id: int, now: dt.datetime) -> BroadcastInfo | None:
    """Stop a broadcast for everyone it has not reached yet (idempotent); None if unknown."""
    with session_scope(settings.database_url) as session:
        row = session.get(Broadcast, broadcast_id)
        if row is None:
            return None
        ids: list[int] = []
        if row.cancelled_at is None:
            row.cancelled_at = now
            ids = engine.cancel(session, row.series_id)
    sync_queue(settings, ids)
    return get(settings, broadcast_id)


def get(settings: Settings, broadcast_id: int) -> BroadcastInfo | None:
    found = [b for b in list_all(settings) if b.id == broadcast_id]
    return found[0] if found else None


def list_all(settings: Settings) -> list[BroadcastInfo]:
    """Every broadcast, newest first, with how many readers it reached, and how many wait."""
    with session_scope(settings.database_url) as session:
        rows = session.execute(
            select(Broadcast, Series).join(Series, Series.id == Broadcast.series_id)
        ).all()
        ids = [s.id for _, s in rows]
        statuses: dict[tuple[int, str], int] = {
            (sid, status): n
            for sid, status, n in session.execute(
                select(Delivery.series_id, Delivery.status, func.count())
                .where(Delivery.series_id.in_(ids))
                .group_by(Delivery.series_id, Delivery.status)
            )
        }
        waiting = dict(
            session.execute(
                select(Enrollment.series_id, func.count())
                .where(Enrollment.series_id.in_(ids), Enrollment.state == ENROLLED_ACTIVE)
                .group_by(Enrollment.series_id)
            ).all()
        )
        out: list[BroadcastInfo] = []
        for b, s in sorted(rows, key=lambda r: (r[0].created_at, r[0].id), reverse=True):
            sent = statuses.get((s.id, SENT), 0)
            left = waiting.get(s.id, 0)
            in_flight = statuses.get((s.id, CLAIMED), 0) + statuses.get((s.id, RETRY), 0)
            if b.cancelled_at is not None:
                state = "cancelled"
            elif left == 0 and in_flight == 0:
                state = "sent"
            elif sent or in_flight:
                state = "sending"
            else:
                state = "scheduled"
            when = When(b.timing, b.at if b.timing == engine.MOMENT else None, b.on_date)
            out.append(
                BroadcastInfo(
                    id=b.id,
                    slug=s.slug,
                    title=s.title,
                    audience=_audience_text(b.audience),
                    when=when.text() if b.timing != engine.NOW else "now",
                    in_archive=s.in_archive,
                    state=state,
                    recipients=b.recipients,
                    sent=sent,
                    waiting=left,
                    failed=statuses.get((s.id, FAILED), 0),
                    created_at=b.created_at,
                )
            )
        return out


def _audience_text(stored: dict[str, object]) -> str:
    before = stored.get("before")
    series = stored.get("series") or []
    return Audience(
        str(stored.get("kind", "all")),
        tuple(str(s) for s in series) if isinstance(series, list) else (),
        dt.date.fromisoformat(str(before)) if before else None,
    ).text()
