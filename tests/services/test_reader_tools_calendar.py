"""After a reader tool (an edit of zone, cadence or pause, a move, a skip), the person's coming
sends (services.calendar.coming_sends, what her page shows) equal what the engine then sends,
in the style of tests/engine/test_projection.py: the multiset (series, part, local date) shown
equals the multiset sent, ticking at every moment shown and sweeping at the end."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Callable

import pytest
import time_machine
from engine_support import add_person, ship, utc
from sqlalchemy import select

from newsletter.core import timing
from newsletter.core.config import Settings
from newsletter.engine.tick import tick
from newsletter.services import calendar as views
from newsletter.services import reader_tools
from newsletter.store.db import session_scope
from newsletter.store.models import SENT, Delivery, Series, Subscriber

NOW = utc(2026, 3, 2, 12)  # a Monday; Europe/London changes its clocks on 29 March
AFTER = NOW + dt.timedelta(hours=1)  # the tool is used an hour after she joined
WEEKS = 10
MYTHS, CO = "myths-about-psychotherapy", "co-created-process"
Shown = Counter[tuple[str, int, dt.date]]

TOOLS: dict[str, Callable[[Settings, int], object]] = {
    "zone": lambda s, sub: reader_tools.edit(
        s, sub, reader_tools.Edit("Anna", "Pacific/Chatham", "weekly", ""), AFTER
    ),
    "cadence": lambda s, sub: reader_tools.edit(
        s, sub, reader_tools.Edit("Anna", "Europe/London", "fortnightly", ""), AFTER
    ),
    "pause": lambda s, sub: reader_tools.edit(
        s, sub, reader_tools.Edit("Anna", "Europe/London", "weekly", "2026-03-20"), AFTER
    ),
    "move": lambda s, sub: reader_tools.move(s, sub, CO, 2, AFTER),
    "skip": lambda s, sub: reader_tools.skip(s, sub, AFTER),
}


def _shown(settings: Settings, sub_id: int) -> tuple[Shown, list[dt.datetime]]:
    with session_scope(settings.database_url) as session:
        person = session.get(Subscriber, sub_id)
        assert person is not None
        sends = views.coming_sends(session, person, AFTER, weeks=WEEKS)
    shown: Shown = Counter((s.series_slug, s.part_number, s.local_date) for s in sends)
    return shown, [s.at for s in sends]


def _sent(settings: Settings, sub_id: int, zone: str) -> Shown:
    with session_scope(settings.database_url) as session:
        rows = session.execute(
            select(Series.slug, Delivery.part_number, Delivery.sent_at)
            .join(Series, Series.id == Delivery.series_id)
            .where(Delivery.subscriber_id == sub_id, Delivery.status == SENT)
        ).all()
    return Counter((slug, part, timing.local_date(at, zone)) for slug, part, at in rows if at)


@pytest.mark.parametrize("tool", sorted(TOOLS))
def test_her_coming_sends_after_a_tool_are_what_the_engine_sends(
    settings: Settings, tool: str
) -> None:
    ship(settings, NOW)
    sub = add_person(settings, NOW, "Europe/London")
    TOOLS[tool](settings, sub)
    shown, moments = _shown(settings, sub)
    assert shown, "something is coming"
    for moment in moments:
        with time_machine.travel(moment, tick=False):
            tick(settings, moment)
    end = AFTER + dt.timedelta(weeks=WEEKS)
    with time_machine.travel(end, tick=False):
        tick(settings, end)  # a last sweep: nothing the page did not show goes out
    with session_scope(settings.database_url) as session:
        person = session.get(Subscriber, sub)
        assert person is not None
        zone = person.timezone
    sent = _sent(settings, sub, zone)
    # the sweep may send the part due right at `end`, which the window does not show
    assert sent - Counter({k: 1 for k in sent if k[2] >= timing.local_date(end, zone)}) == shown
