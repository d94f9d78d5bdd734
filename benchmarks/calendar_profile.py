"""cProfile of the calendar's slow reads at real size: a count's people, the dashboard's week, the
four-week calendar, each with its SQL statements and their seconds.

    PYTHONPATH=. .venv/bin/python benchmarks/calendar_profile.py DATABASE_URL [--top 18]

Point it at a database `benchmarks/admin_pages.py` seeded. The count is the biggest of the
coming four weeks (as admin_pages.py picks it). Each read runs twice; the second is reported.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import time
from collections.abc import Callable
from typing import Any


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--top", type=int, default=18)
    args = parser.parse_args()
    os.environ["NEWSLETTER_DATABASE_URL"] = args.url

    from sqlalchemy import event

    from newsletter.core.config import get_settings
    from newsletter.services import calendar as calendar_service
    from newsletter.store import calendar, stats
    from newsletter.store.db import get_engine, session_scope
    from newsletter.store.models import utcnow

    zone = get_settings().default_timezone
    now = utcnow()
    with session_scope(args.url) as session:
        days = calendar.upcoming(session, now, zone, 4)
        biggest = max((s for d in days for s in d.sends), key=lambda s: s.count)
    calls: list[tuple[float, str]] = []
    started: list[float] = []

    def before(*_: Any) -> None:
        started.append(time.perf_counter())

    def after(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        calls.append((time.perf_counter() - started.pop(), " ".join(statement.split())[:100]))

    engine = get_engine(args.url)
    event.listen(engine, "before_cursor_execute", before)
    event.listen(engine, "after_cursor_execute", after)
    reads: dict[str, Callable[[Any], object]] = {
        "a count's people": lambda s: calendar_service.people_at(
            s, biggest.series_slug, biggest.part_number, biggest.at, now
        ),
        "dashboard's week": lambda s: stats.week_ahead(s, now, zone),
        "calendar, 4 weeks": lambda s: calendar.upcoming(s, now, zone, 4),
    }
    for name, read in reads.items():
        for _ in range(2):
            calls.clear()
            with session_scope(args.url) as session:
                profile = cProfile.Profile()
                wall = time.perf_counter()
                profile.enable()
                read(session)
                profile.disable()
                wall = time.perf_counter() - wall
        sql = sum(c[0] for c in calls)
        print(
            f"== {name}: {wall:.4f} s, {len(calls)} statements, SQL {sql:.4f} s, "
            f"load {os.getloadavg()[0]:.2f}"
        )
        for seconds, text in sorted(calls, reverse=True)[:3]:
            print(f"   {seconds:.4f} s  {text}")
        pstats.Stats(profile).sort_stats("tottime").print_stats(args.top)


if __name__ == "__main__":
    main()
