"""Liveness: the last tick, worker heartbeats, and when beat is silent or workers are missing."""

from __future__ import annotations

import pytest
import redis

from newsletter.queue import liveness
from newsletter.queue.liveness import (
    BEAT_SILENT_SECONDS,
    WORKER_TTL_SECONDS,
    format_age,
    heartbeat,
    last_tick,
    live_workers,
    record_tick,
)

NOW = 1_800_000_000.0


@pytest.fixture
def client(redis_server_url: str) -> redis.Redis:
    return redis.Redis.from_url(redis_server_url, decode_responses=True)


def test_a_recorded_tick_reads_back_with_its_summary(
    client: redis.Redis, redis_prefix: str
) -> None:
    assert last_tick(client, redis_prefix) is None
    record_tick(client, redis_prefix, {"due": 3, "chunks": 1}, at=NOW - 40)
    tick = last_tick(client, redis_prefix)
    assert tick is not None and tick.at == NOW - 40 and tick.summary == {"due": 3, "chunks": 1}
    reading = liveness.read(client, redis_prefix, NOW)
    assert reading.tick_age == 40 and not reading.beat_silent and reading.can_send


def test_a_tick_without_a_moment_uses_redis_clock(client: redis.Redis, redis_prefix: str) -> None:
    tick = record_tick(client, redis_prefix, {})
    assert abs(tick.at - liveness.redis_now(client)) < 5


def test_beat_is_silent_after_the_threshold(client: redis.Redis, redis_prefix: str) -> None:
    record_tick(client, redis_prefix, {}, at=NOW - BEAT_SILENT_SECONDS)
    reading = liveness.read(client, redis_prefix, NOW)
    assert reading.beat_silent and not reading.can_send
    assert "Beat has not ticked for 3 min" in reading.problems()[0]
    record_tick(client, redis_prefix, {}, at=NOW - 1)
    assert not liveness.read(client, redis_prefix, NOW).beat_silent


def test_never_ticked_is_silent_only_once_something_waited_too_long(
    client: redis.Redis, redis_prefix: str
) -> None:
    assert liveness.read(client, redis_prefix, NOW).can_send  # fresh install, nothing due
    client.zadd(f"{redis_prefix}due", {"7": NOW - 60})
    assert not liveness.read(client, redis_prefix, NOW).beat_silent
    client.zadd(f"{redis_prefix}due", {"8": NOW - BEAT_SILENT_SECONDS - 1})
    reading = liveness.read(client, redis_prefix, NOW)
    assert reading.beat_silent and reading.backlog.due_now == 2
    assert reading.backlog.oldest_due_age == BEAT_SILENT_SECONDS + 1


def test_workers_heartbeat_and_expire(client: redis.Redis, redis_prefix: str) -> None:
    heartbeat(client, redis_prefix, "celery@a", at=NOW - 5)
    heartbeat(client, redis_prefix, "celery@b", at=NOW - WORKER_TTL_SECONDS - 1)
    assert live_workers(client, redis_prefix, NOW) == ["celery@a"]
    liveness.forget_worker(client, redis_prefix, "celery@a")
    assert live_workers(client, redis_prefix, NOW) == []


def test_no_worker_matters_only_while_work_waits(client: redis.Redis, redis_prefix: str) -> None:
    record_tick(client, redis_prefix, {}, at=NOW - 10)
    assert not liveness.read(client, redis_prefix, NOW).workers_missing
    client.zadd(f"{redis_prefix}leases", {"9": NOW + 600})  # claimed, sent to no one
    reading = liveness.read(client, redis_prefix, NOW)
    assert reading.workers_missing and not reading.can_send
    assert reading.problems() == [
        "No worker is running while articles wait to be sent. "
        "Start `newsletter worker` (or restart `newsletter run`)."
    ]
    heartbeat(client, redis_prefix, "celery@a", at=NOW)
    assert liveness.read(client, redis_prefix, NOW).can_send


def test_a_damaged_tick_record_counts_as_none(client: redis.Redis, redis_prefix: str) -> None:
    client.set(f"{redis_prefix}beat:last-tick", "not json")
    assert last_tick(client, redis_prefix) is None


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(None, "never"), (40, "40 s"), (119, "119 s"), (180, "3 min"), (7300, "2 h"), (3e5, "3 days")],
)
def test_ages_read_at_a_glance(seconds: float | None, text: str) -> None:
    assert format_age(seconds) == text


def test_beat_sending_ticks_is_alive_even_when_no_worker_runs_them(
    client: redis.Redis, redis_prefix: str
) -> None:
    record_tick(client, redis_prefix, {}, at=NOW - 600)
    liveness.record_beat(client, redis_prefix, at=NOW - 30)
    reading = liveness.read(client, redis_prefix, NOW)
    assert reading.beat_age == 30 and reading.tick_age == 600 and not reading.beat_silent
    assert liveness.last_beat(client, redis_prefix) == NOW - 30
