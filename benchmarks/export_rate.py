"""Rows a second of the subscriber export, in-process (no HTTP), at whatever size the database holds.

    PYTHONPATH=. .venv/bin/python benchmarks/export_rate.py DATABASE_URL [--runs 3] [--profile]

Point it at a database `benchmarks/admin_pages.py` seeded (100k readers: `--db
sqlite:////tmp/x/bench.db` or a PostgreSQL URL). Prints per run the wall and CPU seconds of
the whole CSV and JSON export, rows/s and the 1-minute load average; --profile adds cProfile's
top functions of one CSV export.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import time


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    os.environ["NEWSLETTER_DATABASE_URL"] = args.url

    from sqlalchemy import func, select

    from newsletter.core.config import get_settings
    from newsletter.services import export
    from newsletter.store.db import session_scope
    from newsletter.store.models import Subscriber

    settings = get_settings()
    with session_scope(args.url) as session:
        rows = session.scalar(select(func.count()).select_from(Subscriber)) or 0
    for fn in (export.export_csv, export.export_json):
        for _ in range(args.runs):
            wall, cpu = time.perf_counter(), time.process_time()
            size = sum(len(chunk) for chunk in fn(settings))
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            print(
                f"{fn.__name__}: {rows} rows, {size} chars, wall {wall:.3f} s, cpu {cpu:.3f} s, "
                f"{rows / wall:,.0f} rows/s, load {os.getloadavg()[0]:.2f}"
            )
    if args.profile:
        profile = cProfile.Profile()
        profile.enable()
        for _ in export.export_csv(settings):
            pass
        profile.disable()
        pstats.Stats(profile).sort_stats("tottime").print_stats(15)


if __name__ == "__main__":
    main()
