"""Chaos fixtures: 2,500 confirmed subscribers due at one slot, the SendGrid stand-in, real CLI runs.

Times are simulated (`--now`) and lie in 2030, after the machine's clock: the product caps a
provider's retry time relative to its own clock, so a future `now` makes every retry due a minute
after the simulated moment, whatever the real date is.
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis
from invariants import CliResult, Mail, check, sendgrid_mails
from sendgrid_fake import API_KEY, FakeSendGrid
from sqlalchemy import insert, select

from newsletter.core.config import Settings, get_settings, load_settings
from newsletter.engine import enrollment
from newsletter.queue.dueset import RedisQueue
from newsletter.store.db import session_scope
from newsletter.store.models import ACTIVE, Series, Subscriber

HERE = Path(__file__).resolve().parent
WRAPPER = HERE / "chaos_cli.py"
MONDAY = dt.datetime(2030, 3, 4, 12, tzinfo=dt.UTC)  # subscribers confirmed
SLOT = dt.datetime(2030, 3, 5, 9, tzinfo=dt.UTC)  # Tuesday 09:00 UTC: part 1 of Myths
WEEK = dt.timedelta(days=7)
MYTHS = "myths-about-psychotherapy"
PEOPLE = 2500  # batch size 1000: three chunks, three SendGrid requests


def at(delta: dt.timedelta = dt.timedelta(0)) -> str:
    return (SLOT + delta).isoformat().replace("+00:00", "Z")


def minutes(n: float) -> dt.timedelta:
    return dt.timedelta(minutes=n)


def hours(n: float) -> dt.timedelta:
    return dt.timedelta(hours=n)


@dataclass
class World:
    settings: Settings
    tmp: Path
    fake: FakeSendGrid | None
    results: list[CliResult] = field(default_factory=list)
    people: list[str] = field(default_factory=list)
    killed: int = 0

    # --- set-up ----------------------------------------------------------------------------

    def seed(self, count: int = PEOPLE) -> list[str]:
        """`newsletter init` (migrations, series from schedules/, shipped series queued; run in
        this process through the CLI's own app to spare a second of start-up per test), then
        `count` confirmed subscribers in UTC bulk-inserted and enrolled with the product's own
        bulk path (enrollment.enroll_new, as imports do): all due at SLOT."""
        from typer.testing import CliRunner

        from newsletter.cli import app

        get_settings.cache_clear()
        done = CliRunner().invoke(app, ["init"])
        assert done.exit_code == 0, done.output
        emails = [f"reader{i:05d}@example.org" for i in range(count)]
        with session_scope(self.settings.database_url) as session:
            rows = [
                {
                    "public_id": secrets.token_hex(8),
                    "email": e,
                    "email_key": e,
                    "name": f"Reader {i}",
                    "timezone": "UTC",
                    "status": ACTIVE,
                    "cadence": "weekly",
                    "takes_new_series": True,
                    "consent_method": "import-consented",
                    "consent_at": MONDAY,
                    "confirmed_at": MONDAY,
                    "created_at": MONDAY,
                    "updated_at": MONDAY,
                }
                for i, e in enumerate(emails)
            ]
            session.execute(insert(Subscriber), rows)
            ids = list(session.scalars(select(Subscriber.id)))
            enrollment.enroll_new(session, ids, MONDAY)
            slugs = list(session.scalars(select(Series.slug).order_by(Series.order)))
            assert slugs[0] == MYTHS, slugs
        with session_scope(self.settings.database_url) as session:
            RedisQueue(self.settings).rebuild(session)
        self.people = emails
        return emails

    # --- running the CLI -------------------------------------------------------------------

    def argv(self, args: Sequence[str], faulty: bool) -> list[str]:
        if faulty:
            return [sys.executable, str(WRAPPER), *args]
        return [sys.executable, "-m", "newsletter", *args]

    def cli(self, *args: str, expect_kill: bool = False, **chaos: str) -> CliResult:
        """Run one command to its end (a deadline only against hanging forever)."""
        env = {**os.environ, **chaos}
        started = time.monotonic()
        done = subprocess.run(
            self.argv(args, bool(chaos)), env=env, capture_output=True, text=True, timeout=300
        )
        result = CliResult(tuple(args), done.returncode, done.stdout, done.stderr)
        if os.environ.get("CHAOS_TIMINGS"):  # a profile for tuning the suite, never asserted
            print(f"{time.monotonic() - started:6.2f} s  {' '.join(args)}", file=sys.stderr)
        self.results.append(result)
        if expect_kill:
            assert result.killed, result.describe()
            self.killed += 1
        return result

    def start(self, *args: str, **chaos: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            self.argv(args, True),
            env={**os.environ, **chaos},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def finish(self, proc: subprocess.Popen[str], *args: str) -> CliResult:
        out, err = proc.communicate(timeout=300)
        result = CliResult(tuple(args), proc.returncode, out, err)
        self.results.append(result)
        return result

    def tick(self, delta: dt.timedelta, **chaos: str) -> dict[str, int] | None:
        """`newsletter tick --now SLOT+delta --json`: its summary, or None when it was killed."""
        import json

        result = self.cli("tick", "--now", at(delta), "--json", **chaos)
        if result.killed:
            return None
        assert result.code == 0, result.describe()
        summary = json.loads(result.out.strip().splitlines()[-1])
        assert set(summary) == {"due", "sent", "retry", "skipped", "failed"}, summary
        return summary  # type: ignore[no-any-return]

    def reconcile(self, delta: dt.timedelta) -> CliResult:
        result = self.cli("reconcile", "--now", at(delta), "--json")
        assert result.code == 0, result.describe()
        return result

    def expire_tick_lock(self) -> None:
        """A SIGKILLed tick leaves its Redis lock until the TTL (real seconds) runs out. The test
        does not wait for it: it deletes the lock key as the TTL would (recovery is simulated
        minutes later). Found by name so a renamed key is still found."""
        client = redis.Redis.from_url(self.settings.redis_url or "")
        prefix = self.settings.redis_prefix
        for key in client.scan_iter(match=f"{prefix}*lock*", count=1000):
            client.delete(key)
        client.close()

    def rate_limit_window_passes(self) -> None:
        """SendGrid's rate-limit window ends in real seconds (X-RateLimit-Reset), which the
        shared send budget in Redis waits for. Simulated minutes later it has passed: the test
        clears the budget keys as the reset would."""
        client = redis.Redis.from_url(self.settings.redis_url or "")
        for key in client.scan_iter(match=f"{self.settings.redis_prefix}sendgrid:ratelimit*"):
            client.delete(key)
        client.close()

    # --- judging ---------------------------------------------------------------------------

    def mails(self) -> list[Mail]:
        assert self.fake is not None
        return sendgrid_mails(self.fake.accepted)

    def check(self, parts: int = 2, mails: list[Mail] | None = None) -> None:
        check(
            self.settings.database_url,
            self.mails() if mails is None else mails,
            due=self.people,
            series=MYTHS,
            parts=parts,
            results=self.results,
            problems=self.fake.problems if self.fake is not None else (),
            killed=self.killed,
        )


@pytest.fixture
def sendgrid_world(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[World]:
    """The SendGrid backend pointed at the stand-in (a thread of this process)."""
    with FakeSendGrid() as fake:
        monkeypatch.setenv("NEWSLETTER_MAIL_BACKEND", "sendgrid")
        monkeypatch.setenv("NEWSLETTER_SENDGRID_HOST", fake.url)
        monkeypatch.setenv("NEWSLETTER_SENDGRID_API_KEY", API_KEY)
        monkeypatch.setenv("NEWSLETTER_BATCH_SIZE", "1000")
        get_settings.cache_clear()
        yield World(load_settings(), tmp_path, fake)
        fake.release()
    get_settings.cache_clear()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[Callable[[], str]]:
    """A redis-server of this test's own (no persistence) that the test may flush and restart."""
    from newsletter.queue.embedded import _free_port

    port = _free_port()
    procs: list[subprocess.Popen[bytes]] = []

    def start() -> str:
        for p in procs:
            if p.poll() is None:
                p.terminate()
                p.wait()
        proc = subprocess.Popen(
            [redis_binary(), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(tmp_path)],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        procs.append(proc)
        client = redis.Redis(host="127.0.0.1", port=port)
        while True:  # until it answers (a real process starting, not a timing assertion)
            try:
                client.ping()
                break
            except redis.ConnectionError:
                assert proc.poll() is None, "redis-server did not start"
        client.close()
        return f"redis://127.0.0.1:{port}/0"

    yield start
    for p in procs:
        if p.poll() is None:
            p.terminate()
            p.wait()


def redis_binary() -> str:
    import shutil

    found = shutil.which("redis-server")
    if found:
        return found
    from newsletter.queue.embedded import redis_executable

    return redis_executable()
