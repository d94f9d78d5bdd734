"""The tick lock: one holder, renewed while its process lives, gone soon after it dies."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import redis

from newsletter.queue.ticklock import TickLock, TickLocked

pytestmark = pytest.mark.both_redis


@pytest.fixture
def client(redis_server_url: str) -> redis.Redis:
    return redis.Redis.from_url(redis_server_url)


@pytest.fixture
def key(redis_prefix: str) -> str:
    return f"{redis_prefix}tick-lock-test"


def test_second_holder_is_refused_with_the_first_ones_age(client: redis.Redis, key: str) -> None:
    lock = TickLock(client, key)
    with lock.hold():
        with pytest.raises(TickLocked) as refused, TickLock(client, key).hold():
            pass
        assert refused.value.age is not None and 0 <= refused.value.age < 60
        assert "another tick holds the lock (started" in str(refused.value)
    with lock.hold():  # released on the way out: free again
        pass
    assert client.get(key) is None


def test_only_the_holder_releases_or_renews(client: redis.Redis, key: str) -> None:
    lock = TickLock(client, key)
    value = lock.acquire()
    assert value is not None and lock.acquire() is None
    lock.release("someone-else:0")
    assert lock.renew("someone-else:0") is False
    assert client.get(key) == value.encode()
    lock.release(value)
    assert client.get(key) is None


def _wait_for(predicate: object, limit: float = 30.0) -> bool:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return False


@pytest.mark.slow  # a holder in a child process, watched over several TTLs
def test_a_killed_holder_stops_blocking_within_the_ttl(
    client: redis.Redis, key: str, redis_server_url: str
) -> None:
    """A holder renews its short lock while alive (it outlives several TTLs), and a SIGKILLed
    one stops renewing: the key expires by itself and the next tick can run."""
    ttl = 1.5
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import sys, time, redis
                from newsletter.queue.ticklock import TickLock
                lock = TickLock(redis.Redis.from_url({redis_server_url!r}), {key!r}, {ttl})
                with lock.hold():
                    print("held", flush=True)
                    time.sleep(600)
                """
            ),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        first = client.get(key)
        # alive: still held (renewed, same value) after more than three TTLs
        time.sleep(ttl * 3.5)
        assert client.get(key) == first
        assert 0 < client.pttl(key) <= ttl * 1000
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
        assert _wait_for(lambda: client.get(key) is None), "the dead holder's lock never expired"
        with TickLock(client, key).hold():
            pass
    finally:
        holder.kill()
        holder.wait()
