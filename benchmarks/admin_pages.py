"""How long the admin pages take at real size: 100k readers, 1M ledger rows, over HTTP.

    .venv/bin/python benchmarks/admin_pages.py [--readers 100000] [--ledger 1000000]
        [--db sqlite | sqlite:////path/bench.db | postgresql+psycopg://…/bench_db] [--drop]

Seeds (once: a database that already holds the readers is reused, so one seed serves a
before and an after run) readers across 12 time zones with a mix of statuses, pauses and
names, enrolled in both shipped series (enrollment.enroll_new), then the ledger: one row per
reader per past broadcast (INSERT … SELECT, in the database: 10 broadcasts = 1M rows at 100k
readers; ~2% failed or retrying) and the provider events of the latest two broadcasts.

Then, signed in as the admin through the FastAPI app (starlette's TestClient, which streams
response bodies), times each page (median of --runs): the dashboard, the series page (with
its queue-form facts), the calendar and its biggest count's people, a person's page, the
subscriber list (first and a deep page), a search by name (common and rare, and its second
page), and the exports (first byte, first rows, whole file). Prints JSON: per page the
seconds, the number of SQL statements, the slowest statement's seconds and its plan (EXPLAIN
QUERY PLAN on SQLite, EXPLAIN on PostgreSQL).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import secrets
import statistics
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
FIRST = ["Ada", "Ben", "Cy", "Dana", "Eli", "Fay", "Gus", "Hana", "Ivo", "Jo", "Kim", "Lou"]
LAST = ["Smith", "Okafor", "Nguyen", "Garcia", "Novak", "Berg", "Rossi", "Kowalski", "Tanaka"]
PASSWORD = "a calm and long benchmark password"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def _status(i: int) -> str:
    r = i % 100
    return (
        "unsubscribed" if r < 4 else "pending" if r < 7 else "bounced" if r < 9 else "complained"
    ) if r < 10 else "active"  # fmt: skip


def _url(db: str, tmp: Path) -> str:
    return f"sqlite:///{tmp / 'bench.db'}" if db == "sqlite" else db


def _ensure_database(url: str) -> None:
    """Create the PostgreSQL database named in `url` when it does not exist yet."""
    if not url.startswith("postgresql"):
        return
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    target = make_url(url)
    admin = create_engine(target.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        if not conn.scalar(
            text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": target.database}
        ):
            conn.execute(text(f'CREATE DATABASE "{target.database}"'))
    admin.dispose()


def _drop_database(url: str) -> None:
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    target = make_url(url)
    admin = create_engine(target.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{target.database}" WITH (FORCE)'))
    admin.dispose()


def seed(url: str, readers: int, ledger: int, now: dt.datetime) -> float:
    """Readers, enrollments, past broadcasts' ledger rows and events; seconds taken."""
    from sqlalchemy import func, select, text

    from newsletter.content import series as content
    from newsletter.core.config import get_settings
    from newsletter.engine import enrollment, series_queue
    from newsletter.store import series as series_store
    from newsletter.store.db import session_scope
    from newsletter.store.models import BROADCAST_KIND, LIVE, Part, Series, Subscriber

    t0 = time.perf_counter()
    with session_scope(url) as session:
        series_store.sync(session, content.load_all(get_settings().schedules_dir))
        for s in sorted(session.scalars(select(Series)), key=lambda s: s.order):
            series_queue.queue_series(session, s.slug, None, now)
    for base in range(0, readers, 5000):
        rows = [
            {
                "id": i + 1,
                "public_id": secrets.token_hex(8),
                "email": f"reader{i}@example.org",
                "email_key": f"reader{i}@example.org",
                "name": None if i % 3 == 0 else f"{FIRST[i % 12]} {LAST[i % 9]}",
                "timezone": ZONES[i % len(ZONES)],
                "status": _status(i),
                "cadence": "fortnightly" if i % 5 == 0 else "weekly",
                "paused_until": (now + dt.timedelta(days=30)).date() if i % 50 == 11 else None,
                "takes_new_series": i % 7 != 0,
                "consent_method": "import",
                "consent_at": now - dt.timedelta(days=400 - i % 400),
                "confirmed_at": now - dt.timedelta(days=400 - i % 400),
                "created_at": now - dt.timedelta(days=400 - i % 400, seconds=i),
                "updated_at": now,
            }
            for i in range(base, min(base + 5000, readers))
        ]
        with session_scope(url) as session:
            session.execute(Subscriber.__table__.insert(), rows)  # type: ignore[attr-defined]
            enrollment.enroll_new(session, [int(r["id"]) for r in rows], now)
    broadcasts = max(1, -(-ledger // readers))
    with session_scope(url) as session:
        for k in range(broadcasts):
            sent = now - dt.timedelta(days=7 * k + 2)
            b = Series(
                slug=f"bench-letter-{k}",
                title=f"Letter {k}",
                send_day=0,
                send_time="09:00",
                state=LIVE,
                kind=BROADCAST_KIND,
                in_archive=False,
                queued_at=sent,
                created_at=sent,
                updated_at=sent,
            )
            session.add(b)
            session.flush()
            session.add(
                Part(
                    series_id=b.id,
                    number=1,
                    filename="letter.md",
                    title=f"Letter {k}",
                    body_md="Hello.",
                    content_hash=f"bench-{k}",
                    first_sent_at=sent,
                )
            )
        session.flush()
        # one row per reader per broadcast, written by the database (seconds, not minutes)
        session.execute(
            text(
                "INSERT INTO deliveries (subscriber_id, series_id, part_number, status,"
                " scheduled_for, sent_at, attempts, crashes, retry_at, last_error,"
                " created_at, updated_at)"
                " SELECT s.id, b.id, 1,"
                " CASE WHEN s.id % 100 = 0 THEN 'failed' WHEN s.id % 100 = 1 THEN 'retry'"
                "  ELSE 'sent' END,"
                " b.created_at, CASE WHEN s.id % 100 > 1 THEN b.created_at END, 1, 0,"
                " CASE WHEN s.id % 100 = 1 THEN b.created_at END,"
                " CASE WHEN s.id % 100 = 0 THEN 'bench: mailbox full'"
                "  WHEN s.id % 100 = 1 THEN 'bench: try again later' END,"
                " b.created_at, b.created_at"
                " FROM series b CROSS JOIN subscribers s"
                " WHERE b.kind = 'broadcast' AND s.id <= :readers"
            ),
            {"readers": readers},
        )
        latest = [
            sid
            for (sid,) in session.execute(
                select(Series.id)
                .where(Series.kind == BROADCAST_KIND)
                .order_by(Series.created_at.desc())
                .limit(2)
            )
        ]
        for kind, every in (("delivered", 1), ("bounce", 37)):
            session.execute(
                text(
                    "INSERT INTO provider_events (provider, event_id, event_type, delivery_id,"
                    " subscriber_id, occurred_at, received_at, detail)"
                    f" SELECT 'sendgrid', '{kind}-' || d.id, '{kind}', d.id, d.subscriber_id,"
                    " d.updated_at, d.updated_at, NULL FROM deliveries d"
                    f" WHERE d.series_id IN ({', '.join(map(str, latest))})"
                    f" AND d.status = 'sent' AND d.id % {every} = 0"
                )
            )
        assert session.scalar(select(func.count()).select_from(Series)) >= broadcasts
    return time.perf_counter() - t0


def analyze(url: str) -> None:
    """Fresh statistics and visibility map, as autovacuum keeps them (PostgreSQL), or as
    `ANALYZE` leaves them (SQLite has none unless asked)."""
    from sqlalchemy import text

    from newsletter.store.db import get_engine

    engine = get_engine(url)
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE"))
    else:
        with engine.begin() as conn:
            conn.execute(text("ANALYZE"))


class Recorder:
    """Every SQL statement the app runs: text, parameters and seconds."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any, float]] = []
        self._start = 0.0

    def before(self, conn: Any, cursor: Any, statement: str, params: Any, *_: Any) -> None:
        self._start = time.perf_counter()

    def after(self, conn: Any, cursor: Any, statement: str, params: Any, *_: Any) -> None:
        self.calls.append((statement, params, time.perf_counter() - self._start))


def explain(url: str, statement: str, params: Any) -> list[str]:
    from newsletter.store.db import get_engine

    engine = get_engine(url)
    sqlite = engine.dialect.name == "sqlite"
    prefix = "EXPLAIN QUERY PLAN " if sqlite else "EXPLAIN "
    with engine.connect() as conn:
        rows = conn.exec_driver_sql(prefix + statement, params).all()
    return [f"{r[1]}:{r[3]}" if sqlite else str(r[0]) for r in rows]


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def served_exports(cookie: str, runs: int) -> dict[str, Any]:
    """The exports over a real uvicorn server in its own process (what a browser gets), with
    the TestClient's session: whole file, first rows, and the server's CPU seconds."""
    import subprocess
    import sys

    import httpx
    import psutil

    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "newsletter.web.app:create_app", "--factory",
         "--port", str(port), "--proxy-headers", "--forwarded-allow-ips", "*",
         "--log-level", "warning"],
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    headers = {"cookie": cookie, "host": "news.example.org", "x-forwarded-proto": "https"}
    out: dict[str, Any] = {}
    try:
        with httpx.Client(base_url=base, headers=headers, timeout=60) as http:
            deadline = time.monotonic() + 180  # its start-up, on a busy machine
            while True:
                try:
                    http.get("/healthz")
                    break
                except httpx.TransportError:
                    if server.poll() is not None or time.monotonic() > deadline:
                        return {"exports_uvicorn": {"error": "the server did not start"}}
                    time.sleep(0.1)
            proc = psutil.Process(server.pid)
            for name, path in (("csv", "/admin/export.csv"), ("json", "/admin/export.json")):
                timings, firsts, cpus = [], [], []
                for _ in range(runs):
                    cpu = sum(proc.cpu_times()[:2])
                    start = time.perf_counter()
                    first = None
                    with http.stream("GET", path) as r:
                        assert r.status_code == 200, (path, r.status_code)
                        seen = 0
                        for chunk in r.iter_bytes():
                            seen += chunk.count(b"\n")
                            if first is None and seen >= 3:
                                first = time.perf_counter() - start
                    timings.append(time.perf_counter() - start)
                    firsts.append(first or 0.0)
                    cpus.append(sum(proc.cpu_times()[:2]) - cpu)
                out[f"export_{name}_uvicorn"] = {
                    "seconds": round(statistics.median(timings), 4),
                    "first_rows": round(statistics.median(firsts), 4),
                    "server_cpu_seconds": round(statistics.median(cpus), 4),
                    "load": round(os.getloadavg()[0], 2),
                }
    finally:
        server.terminate()
        server.wait(10)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--readers", type=int, default=100_000)
    parser.add_argument("--ledger", type=int, default=1_000_000)
    parser.add_argument("--db", default="sqlite")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--drop", action="store_true", help="drop the PostgreSQL database after")
    parser.add_argument("--json", action="store_true", help="accepted: JSON is all it prints")
    parser.add_argument(
        "--no-uvicorn",
        action="store_true",
        help="skip the exports over a real uvicorn server (a subprocess on a free port)",
    )
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="nl-admin-bench-"))
    url = _url(args.db, tmp)
    _ensure_database(url)
    os.environ.update(
        {
            "NEWSLETTER_DATABASE_URL": url,
            "NEWSLETTER_ADMIN_PASSWORD": PASSWORD,
            "NEWSLETTER_SECRET_KEY": "benchmark-secret-key",
            "NEWSLETTER_PUBLIC_URL": "https://news.example.org",
            "NEWSLETTER_REDIS_PREFIX": f"nl-bench-{secrets.token_hex(4)}:",
        }
    )
    os.environ.setdefault("NEWSLETTER_VAR_DIR", str(tmp / "var"))

    from fastapi.testclient import TestClient
    from sqlalchemy import event, func, select

    from newsletter.core.config import get_settings
    from newsletter.store import calendar
    from newsletter.store.db import get_engine, session_scope, upgrade
    from newsletter.store.models import Delivery, Subscriber, utcnow
    from newsletter.web.app import create_app

    upgrade(url)
    now = utcnow().replace(minute=0, second=0, microsecond=0)
    with session_scope(url) as session:
        have = session.scalar(select(func.count()).select_from(Subscriber)) or 0
    seeded = None
    if have < args.readers:
        seeded = round(seed(url, args.readers, args.ledger, now), 1)
    analyze(url)
    with session_scope(url) as session:
        ledger_rows = session.scalar(select(func.count()).select_from(Delivery))
        days = calendar.upcoming(session, utcnow(), get_settings().default_timezone, 4)
        biggest = max((x for d in days for x in d.sends), key=lambda x: x.count)
        person = session.scalar(
            select(Subscriber.id).where(Subscriber.status == "active").order_by(Subscriber.id)
        )

    recorder = Recorder()
    engine = get_engine(url)
    event.listen(engine, "before_cursor_execute", recorder.before)
    event.listen(engine, "after_cursor_execute", recorder.after)

    client = TestClient(
        create_app(get_settings()), base_url="https://news.example.org", follow_redirects=False
    )
    token = CSRF.search(client.get("/admin/login").text)
    assert token
    login = client.post("/admin/login", data={"csrf_token": token.group(1), "password": PASSWORD})
    assert login.status_code == 303, login.status_code
    token = CSRF.search(client.get("/admin/subscribers").text)
    assert token
    csrf = token.group(1)

    def get(path: str) -> Callable[[], dict[str, float]]:
        def run() -> dict[str, float]:
            r = client.get(path)
            assert r.status_code == 200, (path, r.status_code)
            return {}

        return run

    def search(q: str, page: int = 1) -> Callable[[], dict[str, float]]:
        def run() -> dict[str, float]:
            data = {"csrf_token": csrf, "q": q, "status": "", "page": str(page)}
            r = client.post("/admin/subscribers/search", data=data)
            assert r.status_code == 200, r.status_code
            return {}

        return run

    def export(path: str) -> Callable[[], dict[str, float]]:
        def run() -> dict[str, float]:
            start = time.perf_counter()
            first = rows = None
            with client.stream("GET", path) as r:
                assert r.status_code == 200
                seen = 0
                for chunk in r.iter_bytes():
                    if first is None:
                        first = time.perf_counter() - start
                    seen += chunk.count(b"\n")
                    if rows is None and seen >= 3:
                        rows = time.perf_counter() - start
            return {"first_byte": round(first or 0, 4), "first_rows": round(rows or 0, 4)}

        return run

    at = biggest.at.strftime("%Y-%m-%dT%H:%M:%SZ")
    pages: dict[str, Callable[[], dict[str, float]]] = {
        "dashboard": get("/admin"),
        "series_page_with_queue_facts": get("/admin/series"),
        "calendar_4_weeks": get("/admin/calendar"),
        "calendar_people_of_biggest_count": get(
            f"/admin/calendar/{biggest.series_slug}/{biggest.part_number}?at={at}"
        ),
        "person_page": get(f"/admin/subscribers/{person}"),
        "subscribers_first_page": get("/admin/subscribers"),
        "subscribers_page_1000": get("/admin/subscribers?page=1000"),
        "subscribers_active_page_2": get("/admin/subscribers?status=active&page=2"),
        "search_common_name": search("okafor"),
        "search_common_name_page_2": search("okafor", 2),
        "search_one_address": search("reader99999@"),
        "export_csv": export("/admin/export.csv"),
        "export_json": export("/admin/export.json"),
    }
    results: dict[str, Any] = {}
    for name, run in pages.items():
        timings: list[float] = []
        extras: list[dict[str, float]] = []
        runs = max(1, args.runs if not name.startswith("export") else min(args.runs, 2))
        for _ in range(runs):
            recorder.calls.clear()
            start = time.perf_counter()
            extras.append(run())
            timings.append(time.perf_counter() - start)
        slowest = max(recorder.calls, key=lambda c: c[2])
        entry: dict[str, Any] = {
            "seconds": round(statistics.median(timings), 4),
            "statements": len(recorder.calls),
            "slowest_statement_seconds": round(slowest[2], 4),
        }
        for key in extras[0]:
            entry[key] = round(statistics.median(e[key] for e in extras), 4)
        entry["top_statements"] = [
            f"{c[2]:.4f}s {' '.join(c[0].split())[:90]}"
            for c in sorted(recorder.calls, key=lambda c: -c[2])[:3]
        ]
        entry["slowest_statement"] = " ".join(slowest[0].split())[:400]
        entry["plan"] = explain(url, slowest[0], slowest[1])
        results[name] = entry
    if not args.no_uvicorn:
        cookie = "; ".join(f"{k}={v}" for k, v in client.cookies.items())
        results.update(served_exports(cookie, max(1, min(args.runs, 2))))
    client.close()
    print(
        json.dumps(
            {
                "readers": args.readers,
                "ledger_rows": ledger_rows,
                "db": url.split(":", 1)[0],
                "seed_seconds": seeded,
                "calendar_biggest_count": biggest.count,
                "pages": results,
            },
            indent=2,
        )
    )
    from newsletter.store.db import dispose_all

    dispose_all()
    if args.drop and url.startswith("postgresql"):
        _drop_database(url)


if __name__ == "__main__":
    main()
