"""Real processes: a Celery worker (subprocess), beats, racing CLI ticks, SIGKILL, a flushed Redis."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from engine_support import add_person, outbox_mails, ship, utc
from sqlalchemy import select, update
from waiting import wait_for

from newsletter.core.config import Settings, load_settings
from newsletter.queue.dueset import RedisQueue
from newsletter.store.db import session_scope
from newsletter.store.models import CLAIMED, ENROLLED_ACTIVE, SENT, Delivery, Enrollment

pytestmark = pytest.mark.slow

HERE = Path(__file__).parent
MONDAY = utc(2027, 3, 1, 12)
TUESDAY = utc(2027, 3, 2, 9)  # 09:00 in UTC and London


class Proc:
    def __init__(self, argv: list[str], log: Path, env: dict[str, str]) -> None:
        self.log = log
        self.handle = log.open("ab")
        self.p = subprocess.Popen(
            argv, stdout=self.handle, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.p.poll() is None:
            os.killpg(self.p.pid, sig)
            try:
                self.p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.p.pid, signal.SIGKILL)
                self.p.wait()
        self.handle.close()


@pytest.fixture
def fast(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Short lease (reconcile after 5 s), small batches (several chunks fan out)."""
    monkeypatch.setenv("NEWSLETTER_LEASE_SECONDS", "5")
    monkeypatch.setenv("NEWSLETTER_BATCH_SIZE", "7")
    return load_settings()


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Callable[..., Proc]]:
    started: list[Proc] = []

    def start(kind: str, *args: str, script: Path | None = None, **env: str) -> Proc:
        argv = [sys.executable, str(script)] if script else [sys.executable, "-m", "newsletter"]
        argv += [kind, *args] if not script else list(args)
        proc = Proc(argv, tmp_path / f"{kind}-{len(started)}.log", {**os.environ, **env})
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop()


def start_worker(procs: Callable[..., Proc], **env: str) -> Proc:
    worker = procs("worker", "-c", "2", **env)
    wait_for(lambda: "ready." in worker.text() or worker.p.poll() is not None, "worker ready")
    assert worker.p.poll() is None, worker.text()
    return worker


def send_task(settings: Settings, name: str, **kwargs: object) -> None:
    from newsletter.tasks import make_app, queue_name

    app = make_app(settings)
    app.send_task(name, kwargs=kwargs, queue=queue_name(settings))
    app.close()


def sent_count(settings: Settings) -> int:
    with session_scope(settings.database_url) as session:
        return len(list(session.scalars(select(Delivery.id).where(Delivery.status == SENT))))


def due_now(settings: Settings, n: int) -> tuple[dt.datetime, list[int]]:
    """n subscribers whose first part is due a minute ago by the real clock."""
    now = dt.datetime.now(dt.UTC)
    ship(settings, now - dt.timedelta(days=10))
    people = [add_person(settings, now - dt.timedelta(days=10), "UTC") for _ in range(n)]
    with session_scope(settings.database_url) as session:
        session.execute(
            update(Enrollment)
            .where(Enrollment.state == ENROLLED_ACTIVE)
            .values(next_due_at=now - dt.timedelta(minutes=1))
        )
        RedisQueue(settings).rebuild(session)
    return now, people


def assert_once_each(settings: Settings, people: list[int], part: int = 1) -> None:
    mails = outbox_mails(settings)
    with session_scope(settings.database_url) as session:
        rows = list(session.scalars(select(Delivery).where(Delivery.part_number == part)))
    assert sorted(r.subscriber_id for r in rows if r.status == SENT) == sorted(people)
    assert len({m["Message-ID"] for m in mails}) == len(mails)
    ids = [m["X-Newsletter-Delivery"] or m["Message-ID"] for m in mails]
    assert len(ids) == len(set(ids))


def test_tick_task_fans_out_to_the_worker(fast: Settings, procs: Callable[..., Proc]) -> None:
    now, people = due_now(fast, 30)
    _flush_namespace(fast)  # Redis restarted empty: the worker's start must rebuild it
    worker = start_worker(procs)
    wait_for(RedisQueue(fast).is_built, "the worker to rebuild the queue state on start")
    assert RedisQueue(fast).status(now).due_now == 30
    send_task(fast, "newsletter.tick", now=now.isoformat())
    wait_for(lambda: sent_count(fast) == 30, "30 sent")
    assert len(outbox_mails(fast)) == 30
    assert_once_each(fast, people)
    assert worker.text().count("newsletter.send_chunk") >= 5  # 30 / 7 -> 5 chunks


def test_worker_sigkilled_mid_batch_loses_and_doubles_nothing(
    fast: Settings, procs: Callable[..., Proc], tmp_path: Path
) -> None:
    now, people = due_now(fast, 12)
    reached = tmp_path / "reached"
    faulty = procs(
        "worker",
        "-c",
        "1",
        script=HERE / "faulty_worker.py",
        FAULT_AFTER="3",
        FAULT_REACHED=str(reached),
    )
    wait_for(lambda: "ready." in faulty.text() or faulty.p.poll() is not None, "faulty ready")
    assert faulty.p.poll() is None, faulty.text()
    send_task(fast, "newsletter.tick", now=now.isoformat())
    wait_for(reached.exists, "the provider to take 3 mails of the first batch")
    faulty.stop(signal.SIGKILL)  # the whole worker, mid-batch
    assert len(outbox_mails(fast)) == 3
    with session_scope(fast.database_url) as session:
        assert {r.status for r in session.scalars(select(Delivery))} == {CLAIMED}
    start_worker(procs)
    # After the lease, reconcile settles the batch: 3 mails exist (sent), the rest go again.
    time.sleep(fast.lease_seconds + 1)
    send_task(fast, "newsletter.reconcile")
    wait_for(lambda: sent_count(fast) >= 3, "reconcile to confirm the 3 sent")
    polls = 0

    def beat_until_all_sent() -> bool:  # tick every 2 s, as beat would every minute
        nonlocal polls
        if polls % 10 == 0:
            send_task(fast, "newsletter.tick", now=dt.datetime.now(dt.UTC).isoformat())
        polls += 1
        return sent_count(fast) == 12

    wait_for(beat_until_all_sent, "all 12 sent")
    assert len(outbox_mails(fast)) == 12
    assert_once_each(fast, people)


def _flush_namespace(settings: Settings) -> None:
    """FLUSHALL for this test's keys only (the Redis server is shared with other tests)."""
    client = redis.Redis.from_url(settings.redis_url or "")
    keys = list(client.scan_iter(match=f"{settings.redis_prefix}*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


def test_redis_flushed_between_ticks_rebuilds_and_goes_on(
    fast: Settings, procs: Callable[..., Proc]
) -> None:
    ship(fast, MONDAY)
    people = [add_person(fast, MONDAY, z) for z in ("UTC", "Europe/London", "UTC", "UTC")]
    start_worker(procs)
    send_task(fast, "newsletter.tick", now=TUESDAY.isoformat())
    wait_for(lambda: sent_count(fast) == 4, "part 1 to all")
    _flush_namespace(fast)  # Redis lost everything: queue state and broker keys
    again = subprocess.run(
        [sys.executable, "-m", "newsletter", "tick", "--now", TUESDAY.isoformat(), "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(again.stdout)["sent"] == 0  # rebuilt from the database; nothing doubled
    assert RedisQueue(fast).is_built()
    _flush_namespace(fast)
    next_week = TUESDAY + dt.timedelta(weeks=1)
    send_task(fast, "newsletter.tick", now=next_week.isoformat())
    wait_for(lambda: sent_count(fast) == 8, "part 2 to all after the flush")
    assert len(outbox_mails(fast)) == 8
    assert_once_each(fast, people, part=2)


def test_two_ticks_racing_in_two_processes_send_once(settings: Settings) -> None:
    ship(settings, MONDAY)
    people = [add_person(settings, MONDAY, "UTC", name=None) for _ in range(150)]
    # --wait: the second waits for the first instead of exiting 3 ("another tick holds the
    # lock"; tests/chaos covers that answer), then finds nothing left to send
    argv = [
        *(sys.executable, "-m", "newsletter", "tick", "--now", TUESDAY.isoformat(), "--json"),
        *("--wait", "120"),
    ]
    a = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    b = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    out_a, _ = a.communicate(timeout=300)
    out_b, _ = b.communicate(timeout=300)
    assert a.returncode == b.returncode == 0
    sent = json.loads(out_a)["sent"] + json.loads(out_b)["sent"]
    assert sent == 150
    assert len(outbox_mails(settings)) == 150
    assert_once_each(settings, people)


def test_two_beats_make_one_tick_per_interval(
    settings: Settings, procs: Callable[..., Proc], tmp_path: Path
) -> None:
    env = {"NEWSLETTER_BEAT_SECONDS": "1"}
    worker = start_worker(procs, **env)
    procs("beat", **env)
    procs("beat", **env, NEWSLETTER_VAR_DIR=str(tmp_path / "var2"))

    def ran() -> list[str]:
        return [
            line.rsplit("slot", 1)[1].strip()
            for line in worker.text().splitlines()
            if "tick ran: slot" in line
        ]

    wait_for(
        lambda: len(ran()) >= 6 and worker.text().count("already ticked") >= 3,
        "six ticks and some duplicates from the second beat",
    )
    slots = ran()
    assert len(slots) == len(set(slots))  # never two ticks for one interval
