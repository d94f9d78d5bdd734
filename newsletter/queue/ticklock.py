"""The tick lock: one tick at a time, held only while its process is alive.

The lock is a Redis key holding `<token>:<unix start time>` with a short expiry (`TTL_SECONDS`)
that a daemon thread renews every sixth of it while the tick runs. A tick that is killed
(SIGKILL, OOM, power) stops renewing, so its lock is gone within `TTL_SECONDS`: a dead tick
never blocks sending for long, and a live one never loses its lock however long a provider call
takes. Only the holder's token releases or renews it (compare-and-delete / compare-and-expire in
Lua), so a tick that lost its lock can't remove a successor's. Redis 6.2 commands only.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any

TTL_SECONDS = 30.0  # renewed every sixth of it (5 s)

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class TickLocked(Exception):
    """Another tick holds the lock; `age` is how long ago it started (seconds), if known."""

    def __init__(self, age: float | None) -> None:
        self.age = age
        held = f"started {age:.0f} s ago" if age is not None else "age unknown"
        super().__init__(f"another tick holds the lock ({held}); this one sent nothing")


@dataclass
class _Held:
    value: str
    stop: threading.Event
    thread: threading.Thread | None


class TickLock:
    """`with TickLock(redis, key).hold(wait_seconds=0): ...` or TickLocked."""

    def __init__(self, redis: Any, key: str, ttl_seconds: float = TTL_SECONDS) -> None:
        self.redis = redis
        self.key = key
        self.ttl_ms = int(ttl_seconds * 1000)
        self.renew_every = ttl_seconds / 6
        self._renew = redis.register_script(_RENEW)
        self._release = redis.register_script(_RELEASE)

    def holder_age(self) -> float | None:
        """Seconds since the current holder took the lock; None when free or unreadable."""
        raw = self.redis.get(self.key)
        if raw is None:
            return None
        text = raw.decode() if isinstance(raw, bytes) else str(raw)
        try:
            return max(0.0, time.time() - float(text.rsplit(":", 1)[1]))
        except (IndexError, ValueError):
            return None

    def acquire(self) -> str | None:
        value = f"{secrets.token_hex(12)}:{time.time():.3f}"
        return value if self.redis.set(self.key, value, nx=True, px=self.ttl_ms) else None

    def renew(self, value: str) -> bool:
        return bool(self._renew(keys=[self.key], args=[value, self.ttl_ms]))

    def release(self, value: str) -> None:
        self._release(keys=[self.key], args=[value])

    @contextmanager
    def hold(self, wait_seconds: float = 0.0, renew: bool = True) -> Iterator[str]:
        """Hold the lock for the block, renewed in the background; TickLocked when taken."""
        value = self.acquire()
        deadline = time.monotonic() + wait_seconds
        while value is None and time.monotonic() < deadline:
            time.sleep(0.1)
            value = self.acquire()
        if value is None:
            raise TickLocked(self.holder_age())
        held = _Held(value, threading.Event(), None)
        if renew:
            held.thread = threading.Thread(
                target=self._keep, args=(held,), name="tick-lock", daemon=True
            )
            held.thread.start()
        try:
            yield value
        finally:
            held.stop.set()
            if held.thread is not None:
                held.thread.join(timeout=self.renew_every)
            with suppress(Exception):  # Redis gone: the key expires by itself within the TTL
                self.release(value)

    def _keep(self, held: _Held) -> None:
        while not held.stop.wait(self.renew_every):
            try:
                if not self.renew(held.value):
                    return  # lost (Redis flushed or restarted): nothing left to renew
            except Exception:
                continue  # Redis briefly unreachable: try again at the next beat
