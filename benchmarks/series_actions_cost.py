"""The admin's actions on every reader at once: statements, thread CPU and wall time at N readers.

Queue a series for everyone, queue one again with a new start, pause it, resume it, reload
schedules/, a broadcast to all and its cancel, a part appended to a series everyone finished, on
readers made by tests/scale_support.add_readers (N defaults to 2,000: `NL_N`). Run
through pytest (it borrows the tests' fixtures: a fresh database and Redis prefix):

    PYTHONPATH=.:tests .venv/bin/python -m pytest benchmarks/series_actions_cost.py -p conftest -q -s
    TEST_DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:5432/test \\
        PYTHONPATH=.:tests .venv/bin/python -m pytest benchmarks/series_actions_cost.py -p conftest -q -s
"""

from __future__ import annotations

import datetime as dt
import os
import time
from typing import Any

from engine_support import ship
from scale_support import BATCH_MONDAY, add_readers, statements
from sqlalchemy import update

from newsletter.content.letter import letter
from newsletter.engine import series_queue
from newsletter.services import broadcasts, series_admin
from newsletter.store import series as series_store
from newsletter.store.db import session_scope
from newsletter.store.models import FINISHED, Enrollment, Part

START = dt.date(2030, 4, 1)  # a start after the readers' first slot: nobody's part 1 is due


def _measure(settings: Any, name: str, fn: Any) -> Any:
    t, wall = time.thread_time(), time.perf_counter()
    with statements(settings) as seen:
        out = fn()
    cpu, wall = time.thread_time() - t, time.perf_counter() - wall
    print(f"  {name}: {len(seen)} statements, {cpu:.2f} s CPU, {wall:.2f} s wall")
    return out


def test_series_actions_cost(settings: Any) -> None:
    n = int(os.environ.get("NL_N", "2000"))
    ship(settings, BATCH_MONDAY, queue=False)
    add_readers(settings, BATCH_MONDAY, n)
    now = BATCH_MONDAY
    print(f"\n{settings.database_url.split(':')[0]} at {n} readers")
    _measure(
        settings,
        "queue myths",
        lambda: series_admin.queue_series(settings, "myths-about-psychotherapy", None, now),
    )
    _measure(
        settings,
        "queue co-created",
        lambda: series_admin.queue_series(settings, "co-created-process", None, now),
    )
    _measure(  # every reader's Co-Created place waits at part 1: each one locked and moved
        settings,
        "queue co-created again, a new start",
        lambda: series_admin.queue_series(settings, "co-created-process", START, now),
    )
    _measure(
        settings,
        "pause myths",
        lambda: series_admin.pause_series(settings, "myths-about-psychotherapy"),
    )
    _measure(
        settings,
        "resume myths",
        lambda: series_admin.resume_series(settings, "myths-about-psychotherapy", now),
    )
    _measure(settings, "reload", lambda: series_admin.reload_series(settings, now))
    info = _measure(
        settings,
        "broadcast to all",
        lambda: broadcasts.create(
            settings,
            letter("Closed", "Back Monday.", "Closed on Friday."),
            broadcasts.parse_audience("all"),
            broadcasts.parse_when("now", settings, now),
            in_archive=False,
            now=now,
        ),
    )
    _measure(settings, "cancel broadcast", lambda: broadcasts.cancel(settings, info.id, now))
    cocreated = _all_finished(settings, "co-created-process")

    def reopen_for_all() -> list[int]:
        with session_scope(settings.database_url) as session:
            return series_queue.parts_appended(session, cocreated, now)

    _measure(settings, "a part appended to co-created, finished by all", reopen_for_all)


def _all_finished(settings: Any, slug: str) -> int:
    """Everyone's place in the series finished (as if they had had both parts), and a third
    part added: what `series reload` finds when the therapist appends a part. Its id."""
    with session_scope(settings.database_url) as session:
        series = series_store.by_slug(session, slug)
        assert series is not None
        session.execute(
            update(Enrollment)
            .where(Enrollment.series_id == series.id)
            .values(state=FINISHED, next_part=3, next_due_at=None)
        )
        session.add(
            Part(series_id=series.id, number=3, filename="03.md", title="Three",
                 body_md="x", content_hash="h3")
        )  # fmt: skip
        return series.id
