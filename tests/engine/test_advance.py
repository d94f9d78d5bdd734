"""The advance's memo of the schedule rule answers what the rule answers, reader by reader."""

from __future__ import annotations

import datetime as dt
import itertools
from types import SimpleNamespace
from typing import Any

from newsletter.core import schedule_rule as rule
from newsletter.engine import advance, schedule

SLOT = dt.datetime(2026, 3, 3, 9, 0, tzinfo=dt.UTC)


def test_the_memo_keeps_every_field_the_rule_reads_apart() -> None:
    """Readers and series differing in one field each get their own answer (a memo keyed on
    less would hand one reader another's slot), the same as rule.after_send's."""
    advance._after_send_cache.clear()
    readers: list[Any] = [
        SimpleNamespace(timezone=zone, cadence=cadence, paused_until=paused)
        for zone, cadence, paused in itertools.product(
            ("Europe/London", "Asia/Tokyo"),
            ("weekly", "fortnightly"),
            (None, dt.date(2026, 4, 1)),
        )
    ]
    series: list[Any] = [
        SimpleNamespace(id=sid, send_day=day, send_time=at, cadence=cadence)
        for sid, day, at, cadence in (
            (1, 1, "09:00", "weekly"),
            (2, 1, "09:00", "weekly"),
            (1, 3, "09:00", "weekly"),
            (1, 1, "18:30", "weekly"),
            (1, 1, "09:00", "fortnightly"),
        )
    ]
    answers = set()
    for _ in range(2):  # the second round answers from the memo
        for sub, ser, not_before, now in itertools.product(
            readers,
            series,
            (None, dt.date(2026, 5, 4)),
            (SLOT + dt.timedelta(minutes=1), SLOT + dt.timedelta(days=2)),
        ):
            got = advance._after_send(sub, ser, not_before, SLOT, now)
            expected = rule.after_send(
                schedule.reader_of(sub), schedule.times_of(ser), not_before, SLOT, now
            )
            assert got == expected
            answers.add(got)
    assert len(answers) > 10  # the fields matter: many distinct slots among these readers
