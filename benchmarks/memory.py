"""Peak memory of one tick with N subscribers due (default 100,000): it must not grow with N.

Usage: python benchmarks/memory.py [N ...]     (each N runs in a fresh process)
Uses a temporary SQLite database (or NEWSLETTER_DATABASE_URL), NEWSLETTER_REDIS_URL or an
embedded Redis, the shipped series, and a provider that accepts everything without writing files
(the outbox would write N .eml files; the delivery backends have their own benchmarks).
Prints peak RSS after set-up and after the tick, and the tick's summary.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def one(n: int) -> dict[str, object]:
    from sqlalchemy import select

    import newsletter.mail.backends as delivery
    from newsletter.content import series as content
    from newsletter.core.config import load_settings
    from newsletter.engine import series_queue
    from newsletter.mail.message import Accepted, Message, Outcome, Recipient
    from newsletter.queue.dueset import RedisQueue
    from newsletter.store import db
    from newsletter.store import series as series_store
    from newsletter.store.models import ACTIVE, ENROLLED_ACTIVE, Enrollment, Series, Subscriber

    class Accepting:
        name = "null"

        def send(self, message: Message, recipients: Sequence[Recipient]) -> list[Outcome]:
            return [Accepted(f"bench-{r.delivery_id}") for r in recipients]

    delivery.get_backend = lambda settings, name=None: Accepting()  # type: ignore[assignment]
    tmp = Path(tempfile.mkdtemp(prefix="nl-bench-"))
    url = os.environ.get("NEWSLETTER_DATABASE_URL") or f"sqlite:///{tmp / 'bench.db'}"
    settings = load_settings(
        database_url=url,
        var_dir=tmp / "var",
        outbox_dir=tmp / "outbox",
        schedules_dir=ROOT / "schedules",
        templates_dir=ROOT / "templates",
        secret_key="bench-secret",
        redis_prefix=f"nlbench:{os.getpid()}:",
    )
    db.upgrade(url)
    now = dt.datetime(2027, 3, 2, 9, tzinfo=dt.UTC)
    with db.session_scope(url) as session:
        series_store.sync(session, content.load_all(settings.schedules_dir))
        for slug in session.scalars(select(Series.slug).order_by(Series.order)):
            series_queue.queue_series(session, slug, None, now - dt.timedelta(days=7))
        first = session.scalar(select(Series.id).order_by(Series.order))
    with db.session_scope(url) as session:
        for base in range(0, n, 10_000):
            size = min(10_000, n - base)
            session.execute(
                Subscriber.__table__.insert(),  # type: ignore[attr-defined]
                [
                    {
                        "id": base + i + 1,
                        "public_id": f"p{base + i}",
                        "email": f"reader{base + i}@example.org",
                        "email_key": f"reader{base + i}@example.org",
                        "name": "Reader",
                        "timezone": "UTC",
                        "status": ACTIVE,
                        "cadence": "weekly",
                        "takes_new_series": True,
                        "created_at": now,
                        "updated_at": now,
                    }
                    for i in range(size)
                ],
            )
            session.execute(
                Enrollment.__table__.insert(),  # type: ignore[attr-defined]
                [
                    {
                        "subscriber_id": base + i + 1,
                        "series_id": first,
                        "position": 1,
                        "next_part": 1,
                        "next_due_at": now,
                        "state": ENROLLED_ACTIVE,
                        "created_at": now,
                        "updated_at": now,
                    }
                    for i in range(size)
                ],
            )
    queue = RedisQueue(settings)
    with db.session_scope(url) as session:
        queue.rebuild(session)
    db.dispose_all()
    setup_peak = peak_mb()
    # The tick runs in a fresh process so its peak is not hidden under the set-up's.
    env = {
        **os.environ,
        "NEWSLETTER_DATABASE_URL": url,
        "NEWSLETTER_REDIS_PREFIX": settings.redis_prefix,
        "NEWSLETTER_VAR_DIR": str(tmp / "var"),
        "NEWSLETTER_OUTBOX_DIR": str(tmp / "outbox"),
        "NEWSLETTER_SCHEDULES_DIR": str(ROOT / "schedules"),
        "NEWSLETTER_TEMPLATES_DIR": str(ROOT / "templates"),
        "NEWSLETTER_SECRET_KEY": "bench-secret",
    }
    out = subprocess.run(
        [sys.executable, __file__, "--tick", now.isoformat()],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    keys = list(queue.redis.scan_iter(match=f"{settings.redis_prefix}*"))
    if keys:
        queue.redis.delete(*keys)
    return {
        "subscribers_due": n,
        "peak_rss_mb_setup_process": round(setup_peak, 1),
        "batch_size": settings.batch_size,
        **result,
    }


def tick_only(now: str) -> dict[str, object]:
    """Run one tick with the environment's settings; its summary, seconds and peak RSS."""
    import newsletter.mail.backends as delivery
    from newsletter.core.config import load_settings
    from newsletter.engine.tick import tick
    from newsletter.mail.message import Accepted, Message, Outcome, Recipient

    class Accepting:
        name = "null"

        def send(self, message: Message, recipients: Sequence[Recipient]) -> list[Outcome]:
            return [Accepted(f"bench-{r.delivery_id}") for r in recipients]

    delivery.get_backend = lambda settings, name=None: Accepting()  # type: ignore[assignment]
    settings = load_settings()
    before = peak_mb()
    started = time.perf_counter()
    summary = tick(settings, dt.datetime.fromisoformat(now))
    return {
        "summary": summary.as_dict(),
        "tick_seconds": round(time.perf_counter() - started, 1),
        "peak_rss_mb_before_tick": round(before, 1),
        "peak_rss_mb_after_tick": round(peak_mb(), 1),
    }


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--tick":
        print(json.dumps(tick_only(sys.argv[2])))
        return
    if len(sys.argv) > 1 and sys.argv[1] == "--one":
        if not os.environ.get("NEWSLETTER_REDIS_URL"):
            from newsletter.queue.embedded import EmbeddedRedis

            server = EmbeddedRedis(Path(tempfile.mkdtemp(prefix="nl-bench-redis-")))
            server.start()
            os.environ["NEWSLETTER_REDIS_URL"] = server.url
            try:
                print(json.dumps(one(int(sys.argv[2]))))
            finally:
                server.stop()
            return
        print(json.dumps(one(int(sys.argv[2]))))
        return
    sizes = [int(a) for a in sys.argv[1:]] or [10_000, 100_000]
    for n in sizes:
        out = subprocess.run(
            [sys.executable, __file__, "--one", str(n)], capture_output=True, text=True, check=True
        )
        result = json.loads(out.stdout.strip().splitlines()[-1])
        print(
            f"{n:>7} due: sent {result['summary']['sent']:>7}  "
            f"tick process peak RSS {result['peak_rss_mb_after_tick']:.0f} MB "
            f"(before the tick {result['peak_rss_mb_before_tick']:.0f} MB)  "
            f"tick {result['tick_seconds']} s, batches of {result['batch_size']}"
        )


if __name__ == "__main__":
    main()
