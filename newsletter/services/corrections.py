"""Corrections: the text of a part already sent, fixed; optionally sent to those who had it.

Where a correction lives (README "Reader tools and corrections"): the files under schedules/
stay the one source of a part's text. A correction rewrites the part's file through the
series editor's own save (`series_editor.save` with `correcting`: the same lock, staging,
validator and atomic replace, then the same sync), so the database's copy, the archive and every
later send carry the corrected text, and a "Reload from files" never undoes it. The database
records when (`parts.corrected_at`, shown as "Corrected on …" on the archive page).

Readers who already had the part get nothing unless she ticks "send the correction": then one
extra send each (store.ledger.extras, kind "correction", keyed by the form's key and the
reader: a double submit sends nothing twice), never their progress.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace

from newsletter.content import writing
from newsletter.content.writing import PartText
from newsletter.core.config import Settings
from newsletter.engine.extra_send import send_extras
from newsletter.services import series_editor
from newsletter.services.editor_words import Problem
from newsletter.services.reader_tools import valid_key
from newsletter.store import corrections, reader_actions
from newsletter.store.db import session_scope
from newsletter.store.ledger import extras
from newsletter.store.ledger.places import had_part
from newsletter.store.series import by_slug


class CorrectionError(Exception):
    """The correction can't be saved; the message says why."""


@dataclass(frozen=True)
class CorrectionForm:
    slug: str
    series_title: str
    number: int
    title: str
    summary: str
    body: str
    token: str
    sent_to: int
    first_sent_at: dt.datetime
    corrected_at: dt.datetime | None


@dataclass(frozen=True)
class Corrected:
    changed: bool
    sent: int  # corrections sent now
    not_sent: int  # could not be sent (stopped, refused): the page says so
    message: str


def open_part(settings: Settings, slug: str, number: int) -> CorrectionForm | None:
    """The sent part as the correction form shows it; None when there is no such sent part."""
    opened = series_editor.open_series(settings, slug)
    if opened is None or not 1 <= number <= len(opened.text.parts):
        return None
    part = opened.text.parts[number - 1]
    lock = opened.sent.get(part.filename)
    if lock is None:
        return None
    with session_scope(settings.database_url) as session:
        series = by_slug(session, slug)
        assert series is not None
        when = corrections.corrected_at(session, series.id, number)
    return CorrectionForm(
        slug,
        opened.text.title,
        number,
        part.title,
        part.summary,
        part.body,
        opened.token,
        lock.sent_to,
        lock.first_sent_at,
        when,
    )


def correct(
    settings: Settings,
    slug: str,
    number: int,
    *,
    title: str,
    summary: str,
    body: str,
    token: str,
    send: bool,
    key: str,
    now: dt.datetime,
) -> Corrected:
    """Save the corrected text of sent part `number`; with `send`, mail it once to each reader
    who had it. CorrectionError (nothing saved) when the form is stale or the text invalid."""
    key = valid_key(key)
    opened = series_editor.open_series(settings, slug)
    if opened is None or not 1 <= number <= len(opened.text.parts):
        raise CorrectionError("There is no such part.")
    old = opened.text.parts[number - 1]
    if old.filename not in opened.sent:
        raise CorrectionError("This part has not gone out yet: change it in the series editor.")
    new = replace(old, title=title, summary=summary, body=body.replace("\r\n", "\n"))
    changed = series_editor._values(new) != series_editor._values(old)
    if changed:
        parts = list(opened.text.parts)
        parts[number - 1] = new
        try:
            series_editor.save(
                settings,
                slug,
                replace(opened.text, parts=parts),
                token,
                now,
                correcting=frozenset({old.filename}),
            )
        except series_editor.EditorError as exc:
            raise CorrectionError(_problems(exc.problems)) from None
    with session_scope(settings.database_url) as session:
        series = by_slug(session, slug)
        assert series is not None
        if changed:
            corrections.mark_corrected(session, series.id, number, now)
        ids: list[int] = []
        if send:
            readers = had_part(session, series.id, number)
            wanted = [(f"fix-{key}-{r}", r, series.id, number) for r in readers]
            ids = extras.add_extras(session, extras.CORRECTION, wanted, now)
            added = {x.subscriber_id for x in extras.extras_by_id(session, ids)}
            noted = sorted(r for r in added if r is not None)
            detail = f"part {number} of “{series.title}”"
            reader_actions.note_each(session, noted, reader_actions.CORRECTION_SENT, detail, now)
    report = send_extras(settings, ids, now) if ids else None
    return _said(changed, send, report.sent if report else 0, len(ids))


def _values(part: PartText) -> tuple[str, str, str]:
    """A part's text as the files keep it (what counts as a change)."""
    return (
        writing.one_line(part.title),
        writing.one_line(part.summary),
        writing.body_text(part.body),
    )


def _problems(problems: list[Problem]) -> str:
    return " ".join(p.message for p in problems) or "The correction could not be saved."


def _said(changed: bool, send: bool, sent: int, made: int) -> Corrected:
    first = (
        "Correction saved: the archive and later sends use it."
        if changed
        else "No change to the text."
    )
    if not send:
        return Corrected(changed, 0, 0, f"{first} Nothing was sent to readers who had it.")
    if not made:
        return Corrected(changed, 0, 0, f"{first} The correction had already been sent.")
    rest = made - sent
    tail = f" {rest} could not be sent now (see their pages)." if rest else ""
    return Corrected(
        changed,
        sent,
        rest,
        f"{first} Sent to {sent} reader{'s' if sent != 1 else ''} who had it.{tail}",
    )
