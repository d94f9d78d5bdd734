"""Celery wiring: what a new pool process does before its first task."""

from __future__ import annotations

import datetime as dt
import gc

import pytest

from newsletter.core.config import Settings
from newsletter.core.heap import FIRST_GENERATION


def test_a_pool_process_freezes_its_start_up_heap_and_still_collects_later_garbage(
    settings: Settings,
) -> None:
    from newsletter import tasks  # imported after the settings are exported

    gc.unfreeze()
    threshold = gc.get_threshold()
    try:
        tasks.settle_process()
        frozen = gc.get_freeze_count()
        assert frozen > 1000  # the modules' objects, out of the collector's walks
        assert gc.get_threshold()[0] == FIRST_GENERATION  # a chunk's young garbage in larger steps

        class Node:
            pass

        a, b = Node(), Node()
        a.other, b.other = b, a  # type: ignore[attr-defined]
        del a, b
        assert gc.collect() >= 2  # a cycle made afterwards is still collected
        assert gc.get_freeze_count() == frozen
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)


UTC = dt.UTC


def _at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_beat_ticks_on_the_minute_whenever_it_started(settings: Settings) -> None:
    from newsletter import tasks

    clock = [_at("2026-12-01 12:00:17.300")]  # beat starts 17.3 s into a minute
    tick = tasks.aligned(60, nowfun=lambda: clock[0])
    assert tasks.app.conf.beat_schedule["tick"]["schedule"] == tasks.aligned(tasks.BEAT_SECONDS)
    started = clock[0]  # beat's first last_run_at is its start
    assert tick.is_due(started) == (False, pytest.approx(42.7))
    assert tick.remaining_estimate(started) == dt.timedelta(seconds=42.7)

    runs: list[dt.datetime] = []
    last = started
    for _ in range(5):  # beat's loop: sleep what is_due says, run when due
        due, wait = tick.is_due(last)
        if due:
            runs.append(clock[0])
            last = clock[0] + dt.timedelta(milliseconds=20)  # the time beat stamps the run
        clock[0] = clock[0] + dt.timedelta(seconds=wait)
    assert runs == [_at(f"2026-12-01 12:0{m}:00") for m in (1, 2, 3, 4)]
    assert all(run.second == 0 and run.microsecond == 0 for run in runs)

    # Just before a boundary: not due, wakes at the boundary
    clock[0] = _at("2026-12-01 12:04:59.900")
    assert tick.is_due(last) == (False, pytest.approx(0.1))
    # beat down across a boundary: runs once at start, then on the next minute
    clock[0] = _at("2026-12-01 12:07:31")
    assert tick.is_due(last) == (True, pytest.approx(29.0))


def test_a_short_beat_interval_for_tests_is_aligned_too(settings: Settings) -> None:
    from newsletter import tasks

    clock = [_at("2026-12-01 12:00:00.400")]
    tick = tasks.aligned(1, nowfun=lambda: clock[0])
    assert tick.is_due(clock[0]) == (False, pytest.approx(0.6))
    clock[0] = _at("2026-12-01 12:00:01.000")
    assert tick.is_due(_at("2026-12-01 12:00:00.400")) == (True, pytest.approx(1.0))


def test_a_tick_just_before_the_boundary_by_redis_clock_sweeps_as_of_the_boundary() -> None:
    from newsletter import tasks

    minute = _at("2026-12-01 12:00:00").timestamp()
    slot = int(minute // 60)
    assert tasks.tick_slot(minute + 0.3, 60) == (slot, _at("2026-12-01 12:00:00.300"))
    # beat's clock 0.5 s ahead of Redis's: still the 12:00 tick, sweeping what is due at 12:00
    assert tasks.tick_slot(minute - 0.5, 60) == (slot, _at("2026-12-01 12:00:00"))
    assert tasks.tick_slot(minute - 30, 60) == (slot - 1, _at("2026-12-01 11:59:30"))
    assert tasks.tick_slot(minute + 0.9, 1)[0] == int(minute) + 1  # a quarter of a 1 s interval


def test_the_worker_compiles_the_email_templates_before_the_pool_forks(settings: Settings) -> None:
    from newsletter import tasks
    from newsletter.mail import render

    render._shared.clear()
    tasks._warm()
    renderer = render.shared_renderer(settings)  # what every pool process inherits
    assert renderer is render.shared_renderer(settings)
    compiled = {name for (_, name) in (renderer.env.cache or {})}
    assert {"email/article.html", "email/article.txt"} <= compiled


def test_each_task_starts_from_the_effective_settings(settings: Settings) -> None:
    """The worker's tasks make the effective settings themselves (nothing registered on import):
    the values saved on the Settings page, the environment's for the rest; the templates warmed
    before the pool forks are the ones the first chunk renders with."""
    from newsletter import tasks
    from newsletter.mail import render
    from newsletter.store import practice
    from newsletter.store.db import session_scope

    with session_scope(settings.database_url) as db:
        practice.save(db, {"from_name": "Dr Maya Okafor", "postal_address": "12 Mill Lane"})
    current = tasks.current_settings()
    assert (current.from_name, current.postal_address) == ("Dr Maya Okafor", "12 Mill Lane")
    assert current.environment.from_name == settings.from_name  # the environment's, kept
    render._shared.clear()
    tasks._warm()
    warmed = render.shared_renderer(tasks.current_settings())
    assert warmed.settings.from_name == "Dr Maya Okafor" and len(render._shared) == 1
