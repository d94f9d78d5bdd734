"""Import benchmark: `newsletter subscribers import --confirmed` of N rows, as a user runs it.

    .venv/bin/python benchmarks/importing.py [--n 30000] [--db sqlite|postgresql] [--json]
        [--profile [FILE]] [--export-file]

A fresh database (as benchmarks/harness.py makes it) set up as `newsletter init` does (the
shipped series synced and queued), a generated CSV of N distinct readers (email, name, time
zone), then the CLI itself in a child process: wall time including start-up, rows/s, the
child's CPU seconds and peak RSS. Checked afterwards: N subscribers active, N due in Redis.

--export-file: the file is in the export's shape (every column `subscribers export` writes:
status, choices, consent record; each row active with its consent kept, taking both series),
so the import goes through the path that keeps each row's own standing.

--profile: the same import in this process (services.importing.import_csv, no start-up)
under cProfile with a CPU clock; prints the functions with the most cumulative time (and
writes the raw stats to FILE when given, for snakeviz/pstats). cProfile's overhead inflates
small Python calls, so read its shares, not its seconds.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import harness  # noqa: E402

ZONES = ("UTC", "Europe/London", "America/New_York", "Europe/Berlin", "Asia/Tokyo")


def write_csv(path: Path, n: int) -> None:
    with path.open("w", encoding="utf-8") as f:
        f.write("email,name,timezone\n")
        for i in range(n):
            f.write(f"reader{i}@example.org,Reader {i},{ZONES[i % len(ZONES)]}\n")


EXPORT_HEADER = (
    "email,name,timezone,series,status,cadence,paused_until,takes_new_series,consent_method,"
    "consent_at,confirmed_at,unsubscribed_at,created_at,consent_ip,consent_form,consent_wording"
)


def write_export_csv(path: Path, n: int) -> None:
    """N readers as `subscribers export` writes them (active, consent from the form)."""
    series = "myths-about-psychotherapy co-created-process"
    at = "2026-03-02T12:00:00+00:00"
    with path.open("w", encoding="utf-8") as f:
        f.write(EXPORT_HEADER + "\n")
        for i in range(n):
            f.write(
                f"reader{i}@example.org,Reader {i},{ZONES[i % len(ZONES)]},{series},active,"
                f"{'fortnightly' if i % 7 == 0 else 'weekly'},,yes,form,{at},{at},,{at},"
                "203.0.113.9,signup,2026-11-signup-v1\n"
            )


def set_up(db_url: str) -> None:
    from sqlalchemy import select

    from newsletter.content import series as content
    from newsletter.core.config import get_settings
    from newsletter.engine import series_queue
    from newsletter.store import series as series_store
    from newsletter.store.db import session_scope, upgrade
    from newsletter.store.models import Series

    settings = get_settings()
    upgrade(db_url)
    now = dt.datetime.now(dt.UTC)
    with session_scope(db_url) as session:
        series_store.sync(session, content.load_all(settings.schedules_dir))
        session.flush()
        for slug in session.scalars(select(Series.slug).order_by(Series.order)):
            series_queue.queue_series(session, slug, None, now)


def check(db_url: str, redis_url: str, prefix: str) -> dict[str, int]:
    import redis
    from sqlalchemy import func, select

    from newsletter.store.db import session_scope
    from newsletter.store.models import ACTIVE, Subscriber

    with session_scope(db_url) as session:
        active = session.scalar(
            select(func.count()).select_from(Subscriber).where(Subscriber.status == ACTIVE)
        )
    client = redis.Redis.from_url(redis_url)
    due = client.zcard(f"{prefix}due")
    client.close()
    return {"active": int(active or 0), "due_in_redis": int(due)}


class BackendCPU:
    """CPU seconds of the PostgreSQL backends serving one database (local server only): their
    /proc stat read every 20 ms while the import runs (found by a scan of /proc every 0.5 s),
    the last reading of each kept (a backend's final 20 ms may be missed; one that lives less
    than 0.5 s may be missed). 0 on SQLite or when the server is not visible."""

    def __init__(self, database: str | None) -> None:
        import threading

        self.needle = f" {database} ".encode() if database else None
        self.seen: dict[int, float] = {}
        self.base: dict[int, float] | None = None  # backends open before the import: their CPU then
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.tick = os.sysconf("SC_CLK_TCK")

    def __enter__(self) -> BackendCPU:
        if self.needle is not None:
            self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        if self.needle is not None:
            self.thread.join()

    def _loop(self) -> None:
        self._find()
        self.base = dict(self.seen)
        rounds = 0
        while not self.stop.wait(0.02):
            rounds += 1
            if rounds % 25 == 0:  # new backends: a scan of /proc twice a second, not 50 times
                self._find()
            else:
                self._read(list(self.seen))
        self._find()

    def _find(self) -> None:
        assert self.needle is not None
        found = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    if self.needle in f.read():
                        found.append(int(entry))
            except OSError:
                continue
        self._read(found)

    def _read(self, pids: list[int]) -> None:
        for pid in pids:
            try:
                with open(f"/proc/{pid}/stat", "rb") as f:
                    fields = f.read().rsplit(b")", 1)[1].split()
            except OSError:
                continue  # ended: its last reading stays
            self.seen[pid] = (int(fields[11]) + int(fields[12])) / self.tick

    @property
    def seconds(self) -> float:
        base = self.base or {}
        return sum(cpu - base.get(pid, 0.0) for pid, cpu in self.seen.items())


def run(args: argparse.Namespace) -> dict[str, Any]:
    kind = harness.choose_db(args)
    tmp = Path(tempfile.mkdtemp(prefix="nl-import-"))
    db = harness.Database(kind, tmp)
    redis_url, embedded = harness.start_redis(tmp)
    prefix = f"nlimport{os.getpid()}:"
    env = dict(os.environ)
    env.update(
        {
            "NEWSLETTER_DATABASE_URL": db.url,
            "NEWSLETTER_REDIS_URL": redis_url,
            "NEWSLETTER_REDIS_PREFIX": prefix,
            "NEWSLETTER_VAR_DIR": str(tmp / "var"),
            "NEWSLETTER_OUTBOX_DIR": str(tmp / "outbox"),
            "NEWSLETTER_SCHEDULES_DIR": str(ROOT / "schedules"),
            "NEWSLETTER_TEMPLATES_DIR": str(ROOT / "templates"),
        }
    )
    os.environ.update({k: v for k, v in env.items() if k.startswith("NEWSLETTER_")})
    from newsletter.core.config import get_settings

    get_settings.cache_clear()
    result: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "n": args.n,
        "db": kind,
        "load_average_at_start": os.getloadavg()[0],
        "export_file": args.export_file,
    }
    try:
        db.create()
        set_up(db.url)
        path = tmp / "people.csv"
        (write_export_csv if args.export_file else write_csv)(path, args.n)
        if args.profile is not None:
            result.update(profile(path, args.profile))
            result.update(check(db.url, redis_url, prefix))
            return result
        argv = [sys.executable, "-m", "newsletter", "subscribers", "import", str(path)]
        argv += ["--confirmed", "--json"]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        with BackendCPU(db.name if kind == "postgresql" else None) as server:
            done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
            wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if done.returncode != 0:
            raise SystemExit(f"import failed: {done.stderr[-3000:]}")
        report = json.loads(done.stdout)
        result.update(
            {
                "wall_s": wall,
                "rows_per_s": args.n / wall,
                "cpu_s": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
                "peak_rss_mb": after.ru_maxrss / 1024,
                "server_cpu_s": server.seconds,
                "load_average_at_end": os.getloadavg()[0],
                "new": report["new"],
                "invalid": len(report["invalid"]),
                **check(db.url, redis_url, prefix),
            }
        )
    finally:
        from newsletter.store.db import dispose_all

        dispose_all()
        harness.cleanup_redis(redis_url, prefix)
        db.drop()
        if embedded is not None:
            embedded.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    return result


def profile(path: Path, out: str) -> dict[str, Any]:
    import cProfile
    import pstats

    from newsletter.core.config import get_settings
    from newsletter.services import importing

    settings = get_settings()
    profiler = cProfile.Profile(time.process_time)
    cpu = time.process_time()
    start = time.perf_counter()
    profiler.enable()
    done = importing.import_csv(settings, path, dry_run=False, confirmed=True)
    profiler.disable()
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    if out:
        profiler.dump_stats(out)
    pstats.Stats(profiler, stream=sys.stderr).sort_stats("cumulative").print_stats(45)
    return {
        "profiled": True,
        "wall_s": wall,
        "rows_per_s": done.rows / wall,
        "cpu_s": cpu,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "new": done.new,
        "invalid": len(done.invalid),
    }


def report(r: dict[str, Any]) -> str:
    return (
        f"`subscribers import --confirmed` {r['n']:,} rows"
        f"{' (an export)' if r.get('export_file') else ''}  db={r['db']}  "
        f"load average at start={r['load_average_at_start']:.2f}: {r['wall_s']:.2f} s wall "
        f"({'in process, under cProfile' if r.get('profiled') else 'start-up included'}), {r['rows_per_s']:,.0f} rows/s (goal >= 25,000), "
        f"CPU {r['cpu_s']:.2f} s ({r['n'] / max(r['cpu_s'], 1e-9):,.0f} rows per CPU second), "
        + (f"PostgreSQL backend CPU {r['server_cpu_s']:.2f} s, " if r.get("server_cpu_s") else "")
        + f"load average at end={r.get('load_average_at_end', 0):.2f}, "
        f"peak RSS {r['peak_rss_mb']:.0f} MB; {r['active']:,} active, {r['due_in_redis']:,} due "
        "in Redis"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=30_000)
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default=None)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--profile", nargs="?", const="", default=None, metavar="FILE")
    parser.add_argument("--export-file", action="store_true", help="a file in the export's shape")
    args = parser.parse_args()
    result = run(args)
    print(json.dumps(result) if args.json else report(result))


if __name__ == "__main__":
    main()
