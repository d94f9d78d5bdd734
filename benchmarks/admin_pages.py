"""How long the admin's "who gets what, when" queries take at real size (default 100k readers).

    .venv/bin/python benchmarks/admin_pages.py [--readers 100000] [--db sqlite|URL]

Seeds active readers across 12 time zones (bulk insert, enrolled with enrollment.enroll_new in
both shipped series), then times the calendar (4 weeks), one calendar count's list of people,
a person's expected dates, and the series page's queue-form facts; prints JSON with the
seconds and the number of SQL statements each ran.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import secrets
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ZONES = [
    "America/New_York", "America/Chicago", "America/Denver", "America/Los_Angeles",
    "Europe/London", "Europe/Berlin", "Asia/Kolkata", "Asia/Tokyo", "Australia/Sydney",
    "Pacific/Auckland", "America/Sao_Paulo", "Africa/Johannesburg",
]  # fmt: skip
NOW = dt.datetime(2027, 1, 4, 12, tzinfo=dt.UTC)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--readers", type=int, default=100_000)
    parser.add_argument("--db", default="sqlite")
    parser.add_argument("--no-analyze", action="store_true", help="time with stale statistics")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="nl-admin-bench-"))
    url = f"sqlite:///{tmp / 'bench.db'}" if args.db == "sqlite" else args.db
    os.environ["NEWSLETTER_DATABASE_URL"] = url
    os.environ.setdefault("NEWSLETTER_VAR_DIR", str(tmp / "var"))

    from sqlalchemy import event, select, text

    from newsletter.content import series as content
    from newsletter.core.config import get_settings
    from newsletter.engine import enrollment, series_queue
    from newsletter.store import calendar
    from newsletter.store import series as series_store
    from newsletter.store.db import get_engine, session_scope, upgrade
    from newsletter.store.models import ACTIVE, Series, Subscriber
    from newsletter.web.admin.series import _starts, _who

    settings = get_settings()
    upgrade(url)
    with session_scope(url) as session:
        series_store.sync(session, content.load_all(settings.schedules_dir))
        for s in sorted(session.scalars(select(Series)), key=lambda s: s.order):
            series_queue.queue_series(session, s.slug, None, NOW)
    t0 = time.perf_counter()
    for base in range(0, args.readers, 5000):
        rows = [
            {
                "id": i + 1,
                "public_id": secrets.token_hex(8),
                "email": f"reader{i}@example.org",
                "email_key": f"reader{i}@example.org",
                "timezone": ZONES[i % len(ZONES)],
                "status": ACTIVE,
                "cadence": "fortnightly" if i % 5 == 0 else "weekly",
                "takes_new_series": i % 7 != 0,
                "consent_method": "import",
                "consent_at": NOW,
                "confirmed_at": NOW,
                "created_at": NOW,
                "updated_at": NOW,
            }
            for i in range(base, min(base + 5000, args.readers))
        ]
        with session_scope(url) as session:
            session.execute(Subscriber.__table__.insert(), rows)  # type: ignore[attr-defined]
            enrollment.enroll_new(session, [int(r["id"]) for r in rows], NOW)
    seeded = time.perf_counter() - t0
    with session_scope(url) as session:
        if session.get_bind().dialect.name == "postgresql" and not args.no_analyze:
            # fresh statistics, as autovacuum keeps them (without them, right after a bulk
            # insert, PostgreSQL picks a nested loop for the calendar's join: minutes at 20k)
            session.execute(text("ANALYZE"))

    statements = 0

    def count(*_args: object) -> None:
        nonlocal statements
        statements += 1

    event.listen(get_engine(url), "before_cursor_execute", count)

    def timed(fn: Callable[[Any], Any]) -> tuple[Any, dict[str, float]]:
        nonlocal statements
        statements = 0
        with session_scope(url) as session:
            start = time.perf_counter()
            result = fn(session)
            took = time.perf_counter() - start
        return result, {"seconds": round(took, 3), "statements": statements}

    days, cal = timed(lambda s: calendar.upcoming(s, NOW, "America/New_York", 4))
    biggest = max((x for d in days for x in d.sends), key=lambda x: x.count)

    def people(session: Any) -> int:
        series = session.scalar(select(Series).where(Series.slug == biggest.series_slug))
        return calendar.people(session, series, biggest.part_number, biggest.at, NOW)[0]

    listed, ppl = timed(people)
    _, person = timed(lambda s: calendar.person_plan(s, s.get(Subscriber, 1), NOW))
    _, form = timed(lambda s: [(_who(s, x), _starts(s)) for x in s.scalars(select(Series))])
    print(
        json.dumps(
            {
                "readers": args.readers,
                "db": url.split(":", 1)[0],
                "seed_seconds": round(seeded, 1),
                "calendar_4_weeks": cal,
                "calendar_sends": sum(len(d.sends) for d in days),
                "calendar_readers_counted": sum(d.total for d in days),
                "people_of_biggest_count": {**ppl, "people": listed},
                "person_expected_dates": person,
                "series_page_queue_facts": form,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
