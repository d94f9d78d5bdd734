"""The database's CPU for the calendar's grouping and for cheaper shapes of it: the floor under
the 4-week calendar at real size, measured, not guessed.

    PYTHONPATH=. .venv/bin/python benchmarks/calendar_floor.py DATABASE_URL [--runs 5]

Point it at a database `benchmarks/admin_pages.py` seeded. For each statement, min and median of
`--runs` (after one warm run) of the CPU spent on it: this thread's on SQLite (the library runs
in it), the backend's on PostgreSQL (/proc/<pid>/schedstat, the server on this machine), so the
figures hold on a busy machine where wall clocks do not. The first row is the grouping
statement `calendar.upcoming` runs itself (recorded from the app, not copied); the rest are
hand-written shapes, each cheaper and each missing something the calendar needs:

- join only: the active places of live series joined to their active readers, counted;
- without queues: the same grouped by the calendar's columns without the waiting queue (the
  near views' first step, `groups._active`);
- the queue window alone: each reader's waiting queue as text, no join, no grouping;
- queue by count (PostgreSQL): each reader's queued rows folded by a hash aggregate (count and
  the one row when there is one) instead of the ordered window: exact only for readers with at
  most one queued place, so it would need the window again for the rest.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

LIVE = "e.series_id IN (SELECT id FROM series WHERE state = 'live' AND kind != 'broadcast')"
DUE = "e.state = 'active' AND e.next_due_at IS NOT NULL AND e.next_due_at < :before"
KEY = "e.series_id, e.next_part, e.next_due_at, s.timezone, s.cadence, s.paused_until, e.not_before"
QUEUE_TEXT = (
    "CASE WHEN e.state = 'queued' THEN CAST(e.series_id AS VARCHAR) || ':' ||"
    " CAST(e.next_part AS VARCHAR) || ':' || coalesce(CAST(e.not_before AS VARCHAR), '') END"
)

SHAPES: dict[str, str] = {
    "join only": (
        f"SELECT count(*) FROM enrollments e JOIN subscribers s ON s.id = e.subscriber_id"
        f" WHERE {DUE} AND {LIVE} AND s.status = 'active'"
    ),
    "without queues": (
        f"SELECT {KEY}, count(e.id) FROM enrollments e JOIN subscribers s"
        f" ON s.id = e.subscriber_id WHERE {DUE} AND {LIVE} AND s.status = 'active'"
        f" GROUP BY {KEY}"
    ),
    "the queue window alone": (
        "SELECT count(*), max(rest) FROM (SELECT {agg} OVER (PARTITION BY e.subscriber_id"
        " ORDER BY e.position, e.id ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING)"
        f" AS rest FROM enrollments e WHERE e.state IN ('active', 'queued') AND {LIVE}) w"
    ),
}
POSTGRES_ONLY = {
    "queue by count": (
        f"SELECT {KEY}, q.n, q.sid, q.part, q.nb, count(e.id) FROM enrollments e"
        " JOIN subscribers s ON s.id = e.subscriber_id LEFT JOIN (SELECT subscriber_id,"
        " count(*) AS n, min(series_id) AS sid, min(next_part) AS part, min(not_before) AS nb"
        f" FROM enrollments e WHERE e.state = 'queued' AND {LIVE} GROUP BY subscriber_id) q"
        f" ON q.subscriber_id = e.subscriber_id WHERE {DUE} AND {LIVE} AND s.status = 'active'"
        f" GROUP BY {KEY}, q.n, q.sid, q.part, q.nb"
    ),
}


def _cpu_clock(conn: Any) -> Callable[[], float]:
    """Seconds of CPU spent on `conn`'s statements so far: the backend's, or this thread's."""
    if conn.dialect.name != "postgresql":
        return time.thread_time
    pid = conn.connection.dbapi_connection.info.backend_pid

    def backend() -> float:
        with open(f"/proc/{pid}/schedstat") as f:
            return int(f.read().split()[0]) / 1e9

    return backend


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    os.environ["NEWSLETTER_DATABASE_URL"] = args.url

    from sqlalchemy import event, text

    from newsletter.core import timing
    from newsletter.core.config import get_settings
    from newsletter.store import calendar
    from newsletter.store.db import get_engine, session_scope
    from newsletter.store.models import utcnow

    engine = get_engine(args.url)
    pg = engine.dialect.name == "postgresql"
    now = utcnow()
    seen: list[tuple[str, Any]] = []

    def record(_conn: Any, _cursor: Any, statement: str, params: Any, *_: Any) -> None:
        seen.append((statement, params))

    event.listen(engine, "before_cursor_execute", record)
    with session_scope(args.url) as session:
        days = calendar.upcoming(session, now, get_settings().default_timezone, 4)
    event.remove(engine, "before_cursor_execute", record)
    grouping = max(seen, key=lambda s: len(s[0]))  # the GROUP BY with the window is the longest
    # the calendar's own end (as `calendar.upcoming` sets it): midnight after its fourth week
    tz = timing.zone_info(get_settings().default_timezone)
    before: Any = dt.datetime.combine(days[-1].date + dt.timedelta(days=1), dt.time(0), tz)
    before = before.astimezone(dt.UTC).replace(tzinfo=None)
    if not pg:
        before = before.isoformat(sep=" ", timespec="microseconds")
    agg = f"string_agg({QUEUE_TEXT}, ';')" if pg else f"group_concat({QUEUE_TEXT}, ';')"
    shapes = {k: v.replace("{agg}", agg) for k, v in SHAPES.items()}
    if pg:
        shapes.update(POSTGRES_ONLY)

    with engine.connect() as conn:
        clock = _cpu_clock(conn)
        raw = conn.connection.dbapi_connection
        runs: dict[str, Callable[[], int]] = {
            "the calendar's grouping (app)": lambda: len(
                raw.cursor().execute(grouping[0], grouping[1]).fetchall()
            ),
        }
        for name, sql in shapes.items():
            runs[name] = lambda sql=sql: len(conn.execute(text(sql), {"before": before}).all())
        who = "backend" if pg else "this thread's"
        print(f"{engine.dialect.name}: {who} CPU per statement, min / median of {args.runs}")
        for name, run in runs.items():
            spent = []
            for _ in range(args.runs + 1):
                started = clock()
                rows = run()
                spent.append(clock() - started)
            spent = spent[1:]
            print(
                f"  {name:32s} {min(spent):.3f} / {statistics.median(spent):.3f} s"
                f"  ({rows} rows, load {os.getloadavg()[0]:.1f})"
            )


if __name__ == "__main__":
    main()
