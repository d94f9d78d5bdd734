"""The admin's tools on one reader: edit name, zone, cadence and pause; move into a series or to
a part; skip a part; send one part again. Each through the engine's rules, each recorded.

- An edit is the preference save's rule (`schedule.reschedule`): a part already due stays due,
  a pause or a zone/cadence change moves only what that rule says.
- A move and a skip are `engine.placement.move_to` (one function: no going back, nothing while
  a part is on its way, the next due time by the schedule rule).
- "Send again" is an extra send in the ledger (`store.ledger.extras`, kind "again"): never her
  progress; the form's key makes a double click one row (and one email).
Each writes a line on the person's activity list (`store.reader_actions`) in the same
transaction, and mirrors the changed enrollments into Redis after the commit.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from newsletter.core import identity, timing
from newsletter.core.config import Settings
from newsletter.core.vocabulary import ACTIVE, CADENCES, FORTNIGHTLY
from newsletter.engine import placement, schedule
from newsletter.engine.extra_send import ExtraReport, send_extras
from newsletter.services import people
from newsletter.services.preferences import valid_pause
from newsletter.services.signup import InvalidInput
from newsletter.store import reader_actions
from newsletter.store.db import session_scope
from newsletter.store.ledger import extras, received_parts
from newsletter.store.models import BROADCAST_KIND, LIVE, Series, Subscriber
from newsletter.store.series import by_slug

KEY_MAX = 64  # the form's idempotency key


class ToolError(Exception):
    """The action was refused; the message says why, for the admin."""


@dataclass(frozen=True)
class Edit:
    """The reader's details as the admin's form posts them."""

    name: str
    timezone: str
    cadence: str
    paused_until: str  # YYYY-MM-DD or empty


@dataclass(frozen=True)
class SeriesChoice:
    slug: str
    title: str
    parts: int


@dataclass(frozen=True)
class ExtraLine:
    kind: str
    series_title: str
    part_number: int
    status: str
    at: dt.datetime


@dataclass(frozen=True)
class Tools:
    """What the person's page needs for the tools: where she can be moved, what she had,
    what was done to her."""

    series: tuple[SeriesChoice, ...]
    had: tuple[tuple[str, str, int, str], ...]  # (slug, series title, part, part title)
    next_up: tuple[str, int] | None  # (series title, part) that "skip" would skip
    activity: tuple[reader_actions.Activity, ...]
    extras: tuple[ExtraLine, ...]


def _cadence_words(cadence: str) -> str:
    return "every two weeks" if cadence == FORTNIGHTLY else "weekly"


def tools(session: Session, subscriber_id: int) -> Tools | None:
    sub = session.get(Subscriber, subscriber_id)
    if sub is None:
        return None
    counts = schedule.part_counts(session)
    live = session.scalars(
        select(Series)
        .where(Series.state == LIVE, Series.kind != BROADCAST_KIND)
        .order_by(Series.order, Series.id)
    )
    titles = {s.id: s.title for s in session.scalars(select(Series))}
    found = placement.active_place(session, sub)
    return Tools(
        tuple(SeriesChoice(s.slug, s.title, counts.get(s.id, 0)) for s in live),
        tuple(
            (p.series_slug, p.series_title, p.part_number, p.part_title)
            for p in received_parts(session, sub.id)
        ),
        (found[0].title, found[1]) if found else None,
        tuple(reader_actions.activity(session, sub.id)),
        tuple(
            ExtraLine(x.kind, titles.get(x.series_id, "?"), x.part_number, x.status, x.created_at)
            for x in extras.extras_of(session, sub.id)
        ),
    )


def _person(session: Session, subscriber_id: int) -> Subscriber:
    sub = session.get(Subscriber, subscriber_id)
    if sub is None:
        raise LookupError(subscriber_id)
    people.lock(session, sub)
    return sub


def edit(settings: Settings, subscriber_id: int, form: Edit, now: dt.datetime) -> str:
    """Save her name, zone, cadence and pause by the preference rule; says what changed.
    InvalidInput (field -> sentence) when a value can't be taken; LookupError: nobody."""
    errors: dict[str, str] = {}
    try:
        name = identity.clean_name(form.name)
    except ValueError as exc:
        errors["name"], name = str(exc), None
    try:
        zone = identity.check_zone(form.timezone, "")
    except ValueError as exc:
        errors["timezone"], zone = str(exc), ""
    if not zone and "timezone" not in errors:
        errors["timezone"] = "Please choose a time zone."
    if form.cadence not in CADENCES:
        errors["cadence"] = "Please choose weekly or every two weeks."
    with session_scope(settings.database_url) as session:
        sub = _person(session, subscriber_id)
        today = timing.local_date(now, zone or sub.timezone)  # her (new) zone decides "today"
        kept = sub.paused_until.isoformat() if sub.paused_until else ""
        pause = sub.paused_until  # unchanged, even when it has ended meanwhile
        if form.paused_until.strip() != kept:
            try:
                pause = valid_pause(form.paused_until, today)
            except InvalidInput as exc:
                errors.update(exc.errors)
        if errors:
            raise InvalidInput(errors)
        said = _changes(sub, name, zone, form.cadence, pause)
        if not said:
            return "Nothing changed."
        sub.name, sub.timezone, sub.cadence, sub.paused_until = name, zone, form.cadence, pause
        session.flush()
        schedule.reschedule(session, sub, now)
        reader_actions.note(session, sub.id, reader_actions.EDITED, "; ".join(said), now)
        people.sync_after_commit(settings, session, people.enrollment_ids(session, sub))
    return "Saved: " + "; ".join(said) + "."


def _changes(
    sub: Subscriber, name: str | None, zone: str, cadence: str, pause: dt.date | None
) -> list[str]:
    said: list[str] = []
    if name != sub.name:
        said.append(f"name {sub.name or '—'} → {name or '—'}")
    if zone != sub.timezone:
        said.append(f"time zone {sub.timezone} → {zone}")
    if cadence != sub.cadence:
        said.append(f"{_cadence_words(sub.cadence)} → {_cadence_words(cadence)}")
    if pause != sub.paused_until:
        said.append(f"paused until {pause.isoformat()}" if pause else "pause cleared")
    return said


def _series(session: Session, slug: str) -> Series:
    series = by_slug(session, slug)
    if series is None or series.kind == BROADCAST_KIND:
        raise ToolError("There is no such series.")
    return series


def move(settings: Settings, subscriber_id: int, slug: str, part: int, now: dt.datetime) -> str:
    """Move her into `slug` at `part` (engine.placement.move_to); ToolError when refused."""
    with session_scope(settings.database_url) as session:
        sub = _person(session, subscriber_id)
        series = _series(session, slug)
        try:
            changed = placement.move_to(session, sub, series, part, now)
        except placement.PlacementError as exc:
            raise ToolError(str(exc)) from None
        said = f"into “{series.title}” at part {part}"
        reader_actions.note(session, sub.id, reader_actions.MOVED, said, now)
        people.sync_after_commit(settings, session, [row.id for row in changed])
    return f"Moved {said}."


def skip(settings: Settings, subscriber_id: int, now: dt.datetime) -> str:
    """Skip the part that comes next for her (engine.placement.skip)."""
    with session_scope(settings.database_url) as session:
        sub = _person(session, subscriber_id)
        try:
            title, part = placement.skip(session, sub, now)
        except placement.PlacementError as exc:
            raise ToolError(str(exc)) from None
        said = f"part {part} of “{title}”"
        reader_actions.note(session, sub.id, reader_actions.SKIPPED, said, now)
        people.sync_after_commit(settings, session, people.enrollment_ids(session, sub))
    return f"Skipped {said}."


def valid_key(raw: str) -> str:
    """The form's idempotency key (made when the page was drawn): letters, digits, - and _."""
    key = raw.strip()
    if not key or len(key) > KEY_MAX or not all(c.isalnum() or c in "-_" for c in key):
        raise ToolError("The form was incomplete; reload the page and try again.")
    return key


def send_again(
    settings: Settings, subscriber_id: int, slug: str, part: int, key: str, now: dt.datetime
) -> tuple[str, bool]:
    """Send her one part she already had, once per form key (a double click is one email).
    Returns (what happened, whether it went out)."""
    key = valid_key(key)
    with session_scope(settings.database_url) as session:
        sub = _person(session, subscriber_id)
        series = _series(session, slug)
        had = {(p.series_slug, p.part_number) for p in received_parts(session, sub.id)}
        if (slug, part) not in had:
            raise ToolError(
                f"They have not had part {part} of “{series.title}”: nothing to send again."
            )
        if sub.status != ACTIVE:
            raise ToolError("Only an active reader can be sent a part again.")
        added = extras.add_extras(
            session, extras.AGAIN, [(f"again-{key}", sub.id, series.id, part)], now
        )
        said = f"part {part} of “{series.title}”"
        if added:
            reader_actions.note(session, sub.id, reader_actions.SENT_AGAIN, said, now)
        title = series.title
    if not added:
        return f"Already sent: part {part} of “{title}” went once for that click.", True
    report = send_extras(settings, added, now)
    return _said(report, said)


def _said(report: ExtraReport, said: str) -> tuple[str, bool]:
    if report.sent:
        return f"Sent {said} again.", True
    if report.halted:
        return f"Not sent: sending is stopped ({report.halted}). Try again once it runs.", False
    if report.unknown:
        return f"Handed over for sending; no answer yet for {said}.", False
    return f"Not sent: {said} could not be sent (see the list below); try again later.", False
