"""Redis queue state: atomic leased claims, expiring leases, tick lock, rebuild, lost-data marker."""

from __future__ import annotations

import datetime as dt
import threading
from pathlib import Path

import pytest
from engine_support import add_person, ship, utc
from paths import file_mode

from newsletter.core.config import Settings
from newsletter.queue.dueset import QueueLost, RedisQueue
from newsletter.queue.embedded import EmbeddedRedis
from newsletter.queue.ticklock import TickLock
from newsletter.store.db import session_scope

# Claims, leases and locks on the system Redis 7 and on the embedded 6.2 that `make run` uses.
pytestmark = pytest.mark.both_redis


@pytest.fixture
def queue(settings: Settings) -> RedisQueue:
    q = RedisQueue(settings)
    q.redis.set(q.marker_key, "test")
    return q


def test_claim_takes_only_due_and_leases_them(queue: RedisQueue) -> None:
    now = utc(2027, 3, 2, 9)
    for i in range(10):
        queue.schedule(i, now + dt.timedelta(minutes=i - 5))  # 0..5 due, 6..9 later
    assert sorted(queue.claim(now, 100)) == [0, 1, 2, 3, 4, 5]
    assert queue.claim(now, 100) == []  # leased: nobody else gets them
    status = queue.status(now)
    assert (status.due_now, status.leased, status.next_24h) == (0, 6, 4)


def test_expired_lease_comes_back(queue: RedisQueue, settings: Settings) -> None:
    now = utc(2027, 3, 2, 9)
    queue.schedule(7, now)
    assert queue.claim(now, 10) == [7]
    assert queue.claim(now + dt.timedelta(seconds=settings.lease_seconds - 1), 10) == []
    assert queue.claim(now + dt.timedelta(seconds=settings.lease_seconds + 1), 10) == [7]


def test_schedule_releases_the_lease(queue: RedisQueue) -> None:
    now = utc(2027, 3, 2, 9)
    queue.schedule(3, now)
    assert queue.claim(now, 10) == [3]
    queue.schedule(3, now + dt.timedelta(days=7))
    assert queue.status(now).leased == 0
    assert queue.claim(now + dt.timedelta(days=7), 10) == [3]


def test_apply_schedules_removes_and_lets_go_of_leases_in_one_call(queue: RedisQueue) -> None:
    """Two strings to a script: every change lands, past Lua's ~8,000 values a command too,
    and each id's last change wins."""
    now = utc(2027, 3, 2, 9)
    later = now + dt.timedelta(days=7, microseconds=250_000)  # a score's fraction survives
    queue.apply((i, now) for i in range(12_000))
    assert sorted(queue.claim(now, 20_000)) == list(range(12_000))  # all leased now
    changes: list[tuple[int, dt.datetime | None]] = [(i, later) for i in range(0, 12_000, 2)]
    changes += [(i, None) for i in range(1, 12_000, 2)]
    changes += [(0, None), (1, later)]  # changed again: the last change wins
    queue.apply(changes)
    due = dict(queue.redis.zrange(queue.due_key, 0, -1, withscores=True))
    expected = {str(i) for i in range(2, 12_000, 2)} | {"1"}
    assert set(due) == expected
    assert due["1"] == due["4"] == later.timestamp()
    assert queue.redis.zcard(queue.lease_key) == 0
    assert queue.status(now).due_now == 0


def test_concurrent_claims_never_share_an_id(queue: RedisQueue, settings: Settings) -> None:
    now = utc(2027, 3, 2, 9)
    queue.apply((i, now) for i in range(2000))
    results: list[list[int]] = []

    def worker() -> None:
        q = RedisQueue(settings)
        got: list[int] = []
        while batch := q.claim(now, 37):
            got.extend(batch)
        results.append(got)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    every = [i for r in results for i in r]
    assert len(every) == len(set(every)) == 2000


def test_one_tick_per_beat_slot(queue: RedisQueue) -> None:
    assert queue.first_tick_in(123, 120)
    assert not queue.first_tick_in(123, 120)
    assert queue.first_tick_in(124, 120)


def test_lost_redis_is_detected_and_rebuilt_from_database(settings: Settings) -> None:
    now = utc(2027, 3, 1, 12)
    ship(settings, now)
    people = [add_person(settings, now, z) for z in ("UTC", "Asia/Kolkata", "Europe/London")]
    q = RedisQueue(settings)
    before = q.status(now + dt.timedelta(days=7))
    assert before.due_now == len(people)
    q.redis.delete(q.due_key, q.lease_key, q.marker_key)  # as after a restart without data
    with pytest.raises(QueueLost):
        q.claim(now, 10)
    with session_scope(settings.database_url) as session:
        assert q.ensure(session) is True
        assert q.ensure(session) is False
    assert q.status(now + dt.timedelta(days=7)).due_now == len(people)


def test_all_keys_use_the_prefix(settings: Settings) -> None:
    q = RedisQueue(settings)
    now = utc(2027, 3, 1, 12)
    q.schedule(1, now)
    q.claim(now, 1) if q.is_built() else None
    assert TickLock(q.redis, q.lock_key).acquire() is not None
    q.first_tick_in(1, 5)
    with session_scope(settings.database_url) as session:
        q.rebuild(session)
    keys = list(q.redis.scan_iter(match=f"{settings.redis_prefix}*"))
    assert keys
    for key in [q.due_key, q.lease_key, q.marker_key, q.lock_key]:
        assert key.startswith(settings.redis_prefix)


def test_eviction_policies_other_than_noeviction_are_flagged(settings: Settings) -> None:
    from newsletter.tasks import eviction_problem  # imported after the settings are exported

    assert eviction_problem("noeviction") is None
    problem = eviction_problem("allkeys-lru")
    assert problem is not None and "noeviction" in problem


@pytest.mark.usefixtures("umask_022")
def test_the_embedded_server_makes_its_folders_0700(tmp_path: Path) -> None:
    folder = tmp_path / "var" / "redis"
    server = EmbeddedRedis(folder)
    server.start()
    try:
        assert file_mode(folder) == file_mode(folder.parent) == 0o700
    finally:
        server.stop()
