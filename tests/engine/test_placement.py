"""engine.placement: a reader's place set by hand (move, skip) keeps the engine's rules: no part
twice, nothing while a part is on its way, the next due time by the schedule rule."""

from __future__ import annotations

import pytest
from engine_support import add_person, enrollments, ledger, ship, utc
from sqlalchemy import select

from newsletter.core.config import Settings
from newsletter.engine import placement, schedule
from newsletter.engine.tick import tick
from newsletter.queue.dueset import RedisQueue
from newsletter.store.db import session_scope
from newsletter.store.models import (
    CLAIMED,
    ENROLLED_ACTIVE,
    FINISHED,
    QUEUED,
    SENT,
    Delivery,
    Series,
    Subscriber,
)

NOW = utc(2026, 3, 2, 12)  # a Monday
MYTHS, CO = "myths-about-psychotherapy", "co-created-process"


def _send_next(settings: Settings, sub_id: int) -> None:
    """Tick at the reader's next due time: the part due then goes out."""
    [due] = [e.next_due_at for e in enrollments(settings, sub_id) if e.state == ENROLLED_ACTIVE]
    assert due is not None
    tick(settings, due)


def _move(settings: Settings, sub_id: int, slug: str, part: int) -> None:
    with session_scope(settings.database_url) as session:
        sub = session.get(Subscriber, sub_id)
        series = session.scalar(select(Series).where(Series.slug == slug))
        assert sub is not None and series is not None
        changed = placement.move_to(session, sub, series, part, NOW)
        RedisQueue(settings).sync_enrollments(session, [e.id for e in changed])


def _active(settings: Settings, sub_id: int) -> tuple[int, int]:
    [row] = [e for e in enrollments(settings, sub_id) if e.state == ENROLLED_ACTIVE]
    return row.series_id, row.next_part


def test_move_into_another_series_at_a_part_then_the_engine_sends_it(settings: Settings) -> None:
    ids = ship(settings, NOW)
    sub = add_person(settings, NOW)
    _move(settings, sub, CO, 2)
    assert _active(settings, sub) == (ids[CO], 2)
    rows = {e.series_id: e for e in enrollments(settings, sub)}
    assert rows[ids[MYTHS]].state == QUEUED and rows[ids[MYTHS]].next_part == 1
    assert rows[ids[CO]].position < rows[ids[MYTHS]].position  # first in her queue now
    _send_next(settings, sub)
    assert [(s, p) for _, s, p, st, _ in ledger(settings) if st == SENT] == [(ids[CO], 2)]
    assert _active(settings, sub) == (ids[MYTHS], 1)  # CO ended: back to the series waiting


def test_never_back_to_a_part_she_had(settings: Settings) -> None:
    ids = ship(settings, NOW)
    sub = add_person(settings, NOW)
    _send_next(settings, sub)
    _send_next(settings, sub)
    with pytest.raises(placement.PlacementError, match="never goes back"):
        _move(settings, sub, MYTHS, 2)
    assert _active(settings, sub) == (ids[MYTHS], 3)


def test_not_while_a_part_is_on_its_way(settings: Settings) -> None:
    """A claimed row (a send in flight) blocks the move: the engine would move her on again."""
    ids = ship(settings, NOW)
    sub = add_person(settings, NOW)
    with session_scope(settings.database_url) as session:
        session.add(
            Delivery(
                subscriber_id=sub, series_id=ids[MYTHS], part_number=1, status=CLAIMED,
                scheduled_for=NOW, retry_at=NOW,
            )
        )  # fmt: skip
    with pytest.raises(placement.PlacementError, match="on its way"):
        _move(settings, sub, CO, 2)
    assert _active(settings, sub) == (ids[MYTHS], 1)


def test_skip_moves_past_the_next_part_and_the_due_time_follows_the_rule(
    settings: Settings,
) -> None:
    ids = ship(settings, NOW)
    sub = add_person(settings, NOW)
    _send_next(settings, sub)
    [before] = [e.next_due_at for e in enrollments(settings, sub) if e.state == ENROLLED_ACTIVE]
    with session_scope(settings.database_url) as session:
        person = session.get(Subscriber, sub)
        assert person is not None
        assert placement.skip(session, person, NOW)[1] == 2
        RedisQueue(settings).sync_enrollments(session, [e.id for e in enrollments(settings, sub)])
    assert _active(settings, sub) == (ids[MYTHS], 3)
    [after] = [e.next_due_at for e in enrollments(settings, sub) if e.state == ENROLLED_ACTIVE]
    assert after == before  # part 3 takes part 2's slot: one cadence after part 1, no gap
    _send_next(settings, sub)
    sent = [p for _, s, p, st, _ in ledger(settings) if st == SENT and s == ids[MYTHS]]
    assert sent == [1, 3]


def test_a_move_past_the_last_part_is_refused(settings: Settings) -> None:
    ship(settings, NOW)
    sub = add_person(settings, NOW)
    with pytest.raises(placement.PlacementError, match="parts 1 to 2"):
        _move(settings, sub, CO, 3)


def test_skipping_the_last_part_starts_the_next_series(settings: Settings) -> None:
    ids = ship(settings, NOW)
    sub = add_person(settings, NOW)
    with session_scope(settings.database_url) as session:
        count = schedule.part_counts(session)[ids[MYTHS]]
    _move(settings, sub, MYTHS, count)
    with session_scope(settings.database_url) as session:
        person = session.get(Subscriber, sub)
        assert person is not None
        placement.skip(session, person, NOW)
    rows = {e.series_id: e for e in enrollments(settings, sub)}
    assert rows[ids[MYTHS]].state == FINISHED
    assert (rows[ids[CO]].state, rows[ids[CO]].next_part) == (ENROLLED_ACTIVE, 1)
    assert rows[ids[CO]].next_due_at is not None
