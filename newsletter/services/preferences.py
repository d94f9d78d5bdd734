"""The reader's own choices: the preference centre's save, and unsubscribing from everything."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from newsletter.engine import schedule
from newsletter.services.people import Someone, enrollments, lock, rotate_links, row_of
from newsletter.services.signup import InvalidInput
from newsletter.store import webhooks_out
from newsletter.store.models import (
    ACTIVE,
    CADENCES,
    CANCELLED,
    ENROLLED_ACTIVE,
    FINISHED,
    PENDING,
    QUEUED,
    SUPPRESSED_STATUSES,
    UNSUBSCRIBED,
    WEEKLY,
    Series,
)

PAUSE_MAX_DAYS = 366


@dataclass
class Preferences:
    """A complete set of choices from the preference centre."""

    series_slugs: list[str]
    cadence: str = WEEKLY
    paused_until: dt.date | None = None
    timezone: str = "UTC"
    name: str | None = None
    takes_new_series: bool = True


def valid_pause(raw: str | dt.date | None, today: dt.date) -> dt.date | None:
    """A pause-until date in the future (at most a year ahead), or None for no pause.

    A date today or in the past is refused with a message (it used to mean "no pause" silently,
    so a mistyped year looked saved)."""
    if raw is None or raw == "":
        return None
    if isinstance(raw, dt.date):
        value = raw
    else:
        try:
            value = dt.date.fromisoformat(raw.strip())
        except ValueError:
            raise InvalidInput({"paused_until": "Please give the date as YYYY-MM-DD."}) from None
    if value <= today:
        raise InvalidInput(
            {
                "paused_until": "That date has already come: choose a day after today, "
                "or leave it empty for no pause."
            }
        )
    if value > today + dt.timedelta(days=PAUSE_MAX_DAYS):
        raise InvalidInput({"paused_until": "A pause can last up to a year."})
    return value


def update_preferences(
    session: Session, someone: Someone, prefs: Preferences, now: dt.datetime
) -> None:
    """Apply a full set of choices. Enrollments of active subscribers change at once, by
    `schedule.reschedule`'s rule: a part already due stays due (the next tick sends it), a pause
    moves it to the first slot on or after the pause date, a time zone or cadence change moves
    only a part not yet due. Callers mirror `people.enrollment_ids` into Redis after the commit."""
    if prefs.cadence not in CADENCES:
        raise InvalidInput({"cadence": "Please choose weekly or every two weeks."})
    subscriber = row_of(session, someone)
    lock(session, subscriber)
    subscriber.name = prefs.name
    subscriber.timezone = prefs.timezone
    subscriber.cadence = prefs.cadence
    subscriber.paused_until = prefs.paused_until
    subscriber.takes_new_series = prefs.takes_new_series
    webhooks_out.record(session, webhooks_out.PREFERENCES_CHANGED, subscriber, now)
    if subscriber.status == PENDING or (
        subscriber.status != ACTIVE and not enrollments(session, subscriber)
    ):
        subscriber.requested_series = list(prefs.series_slugs)
        session.flush()
        return
    wanted = set(prefs.series_slugs)
    rows = enrollments(session, subscriber)
    series_by_id = {s.id: s for s in session.scalars(select(Series))}
    known: set[str] = set()
    for row in rows:
        slug = series_by_id[row.series_id].slug
        known.add(slug)
        if slug in wanted and row.state == CANCELLED:
            row.state = QUEUED  # back in the queue; resumes at its next unsent part
            row.next_due_at = None
        elif slug not in wanted and row.state in (QUEUED, ENROLLED_ACTIVE):
            row.state = CANCELLED
            row.next_due_at = None
    session.flush()
    missing = [slug for slug in prefs.series_slugs if slug not in known]
    if subscriber.status == ACTIVE:
        if missing:
            schedule.enroll(session, subscriber, now, series_slugs=missing)
        schedule.reschedule(session, subscriber, now)
    session.flush()


def unsubscribe(session: Session, someone: Someone, now: dt.datetime) -> bool:
    """Stop everything at once (idempotent). True when this call unsubscribed them.

    Enrollments keep their place (a later resubscribe resumes there) but lose their due time,
    so nothing is due; callers mirror `people.enrollment_ids` into Redis after the commit
    (`roster.unsubscribe` does that itself). The person's links are rotated
    (`people.rotate_links`): those in emails already sent, forwarded or not, stop working.
    """
    subscriber = row_of(session, someone)
    lock(session, subscriber)
    if subscriber.status in SUPPRESSED_STATUSES:
        return False
    subscriber.status = UNSUBSCRIBED
    subscriber.unsubscribed_at = now
    webhooks_out.record(
        session, webhooks_out.UNSUBSCRIBED_EVENT, subscriber, now
    )  # the id they knew
    rotate_links(subscriber)
    for row in enrollments(session, subscriber):
        if row.state not in (FINISHED, CANCELLED):
            row.next_due_at = None
    session.flush()
    return True
