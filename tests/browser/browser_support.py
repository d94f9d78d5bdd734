"""Constants and set-up steps the browser tests share with their fixtures."""

from __future__ import annotations

import datetime as dt

from engine_support import add_person, enrollments

from newsletter.core.config import Settings
from newsletter.engine import series_queue
from newsletter.engine.tick import tick
from newsletter.store.db import session_scope
from newsletter.store.models import ENROLLED_ACTIVE

ADMIN_PASSWORD = "therapist's own long password"  # conftest.admin_server signs in with it

MYTHS = "myths-about-psychotherapy"


def reader_with_two_parts(settings: Settings) -> int:
    """Myths queued three weeks ago; a reader who joined then and has had parts 1 and 2 (the
    engine run at each due time, so the clock is fixed by the ledger, not the wall)."""
    then = dt.datetime.now(dt.UTC) - dt.timedelta(weeks=3)
    with session_scope(settings.database_url) as session:
        series_queue.queue_series(session, MYTHS, None, then)
    sub = add_person(settings, then, "Europe/London", name="Maya Reader", slugs=[MYTHS])
    for _ in range(2):
        [due] = [e.next_due_at for e in enrollments(settings, sub) if e.state == ENROLLED_ACTIVE]
        assert due is not None
        tick(settings, due)
    return sub
