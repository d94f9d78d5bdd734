"""Liveness of beat and workers in Redis: the last tick, worker heartbeats, and what they mean.

Keys (all under settings.redis_prefix):
  beat:last-tick  JSON {"at": epoch, "summary": {...}}: the last tick that ran (from beat or
                  `newsletter tick`), with its summary (due, chunks, seconds)
  beat:last-beat  epoch when beat last sent a tick task (beat alive even while no worker runs it)
  workers         ZSET worker hostname -> last heartbeat epoch
One clock for all of it: Redis's (`redis_now`), as the tick itself uses (clock drift, #18), so a
worker on another machine and the web's reading agree. Functions take `at`/`now` so callers and
tests can pass a moment; without one they read Redis's clock.

Beat is *silent* when its last sign of life (a tick sent or run) is older than BEAT_SILENT_SECONDS,
or when it never ticked and
something has been due for that long (a fresh install with nothing due is not an alarm). Workers
are *missing* when none heartbeat within WORKER_TTL_SECONDS while work waits: due now, or claimed
(leased) and not yet settled. Either one means nothing can be sent.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

BEAT_SILENT_SECONDS = 180.0
HEARTBEAT_SECONDS = 15.0
WORKER_TTL_SECONDS = 3 * HEARTBEAT_SECONDS + 5


def _keys(prefix: str) -> tuple[str, str, str, str]:
    return f"{prefix}beat:last-tick", f"{prefix}workers", f"{prefix}due", f"{prefix}leases"


def _beat_key(prefix: str) -> str:
    return f"{prefix}beat:last-beat"


def redis_now(redis: Any) -> float:
    """Redis's clock, in epoch seconds."""
    seconds, micros = redis.time()
    return float(seconds) + float(micros) / 1e6


@dataclass(frozen=True)
class Tick:
    at: float
    summary: dict[str, Any] = field(default_factory=dict)


def record_tick(
    redis: Any, prefix: str, summary: Mapping[str, Any], at: float | None = None
) -> Tick:
    """Note that a tick ran (at `at`, default: now) with its summary."""
    tick = Tick(redis_now(redis) if at is None else at, dict(summary))
    redis.set(_keys(prefix)[0], json.dumps({"at": tick.at, "summary": tick.summary}))
    return tick


def last_tick(redis: Any, prefix: str) -> Tick | None:
    raw = redis.get(_keys(prefix)[0])
    if raw is None:
        return None
    try:
        data = json.loads(raw)
        return Tick(float(data["at"]), dict(data.get("summary") or {}))
    except (ValueError, KeyError, TypeError):
        return None  # a damaged record counts as no tick; the next tick overwrites it


def record_beat(redis: Any, prefix: str, at: float | None = None) -> float:
    """Note that beat sent a tick task (at `at`, default: now)."""
    moment = redis_now(redis) if at is None else at
    redis.set(_beat_key(prefix), repr(moment))
    return moment


def last_beat(redis: Any, prefix: str) -> float | None:
    """When beat last sent a tick task, or None."""
    raw = redis.get(_beat_key(prefix))
    try:
        return None if raw is None else float(raw)
    except ValueError:
        return None


def heartbeat(redis: Any, prefix: str, hostname: str, at: float | None = None) -> None:
    """A worker says it is alive; heartbeats older than the TTL are dropped on the way."""
    moment = redis_now(redis) if at is None else at
    key = _keys(prefix)[1]
    pipe = redis.pipeline()
    pipe.zadd(key, {hostname: moment})
    pipe.zremrangebyscore(key, "-inf", moment - 10 * WORKER_TTL_SECONDS)
    pipe.execute()


def forget_worker(redis: Any, prefix: str, hostname: str) -> None:
    """A worker shutting down cleanly leaves the list at once."""
    redis.zrem(_keys(prefix)[1], hostname)


def live_workers(
    redis: Any, prefix: str, now: float | None = None, ttl: float = WORKER_TTL_SECONDS
) -> list[str]:
    """Hostnames of the workers that heartbeat within `ttl` seconds of `now`, sorted."""
    moment = redis_now(redis) if now is None else now
    found = redis.zrangebyscore(_keys(prefix)[1], moment - ttl, "+inf")
    return sorted(h.decode() if isinstance(h, bytes) else str(h) for h in found)


@dataclass(frozen=True)
class Backlog:
    """What waits to be sent: due now, the oldest due item's age, claimed (leased) items."""

    due_now: int
    oldest_due_age: float | None
    leased: int

    @property
    def waiting(self) -> bool:
        return self.due_now > 0 or self.leased > 0


def backlog(redis: Any, prefix: str, now: float) -> Backlog:
    _, _, due_key, lease_key = _keys(prefix)
    pipe = redis.pipeline()
    pipe.zcount(due_key, "-inf", now)
    pipe.zrange(due_key, 0, 0, withscores=True)
    pipe.zcard(lease_key)
    due_now, first, leased = pipe.execute()
    oldest = now - float(first[0][1]) if first and float(first[0][1]) <= now else None
    return Backlog(int(due_now), oldest, int(leased))


@dataclass(frozen=True)
class Liveness:
    """One reading of beat and workers at `now` (Redis's clock)."""

    now: float
    tick: Tick | None
    workers: list[str]
    backlog: Backlog
    beat_at: float | None = None

    @property
    def tick_age(self) -> float | None:
        """Seconds since the last tick ran."""
        return None if self.tick is None else max(0.0, self.now - self.tick.at)

    @property
    def beat_age(self) -> float | None:
        """Seconds since beat's last sign of life: a tick sent or run."""
        seen = [t for t in (self.beat_at, self.tick.at if self.tick else None) if t is not None]
        return max(0.0, self.now - max(seen)) if seen else None

    @property
    def beat_silent(self) -> bool:
        age = self.beat_age
        if age is not None:
            return age >= BEAT_SILENT_SECONDS
        waited = self.backlog.oldest_due_age
        return waited is not None and waited >= BEAT_SILENT_SECONDS

    @property
    def workers_missing(self) -> bool:
        return not self.workers and self.backlog.waiting

    @property
    def can_send(self) -> bool:
        return not (self.beat_silent or self.workers_missing)

    def problems(self) -> list[str]:
        """One line per problem, saying what to do."""
        found = []
        if self.beat_silent:
            since = (
                f"for {format_age(self.beat_age)}"
                if self.beat_age is not None
                else "since it started"
            )
            found.append(
                f"Beat has not ticked {since}: nothing new is being sent. "
                "Start `newsletter beat` (or restart `newsletter run`)."
            )
        if self.workers_missing:
            found.append(
                "No worker is running while articles wait to be sent. "
                "Start `newsletter worker` (or restart `newsletter run`)."
            )
        return found

    def as_dict(self) -> dict[str, Any]:
        return {
            "last_tick_age_seconds": None if self.tick_age is None else round(self.tick_age, 1),
            "beat_age_seconds": None if self.beat_age is None else round(self.beat_age, 1),
            "last_tick": self.tick.summary if self.tick else None,
            "workers": self.workers,
            "due_now": self.backlog.due_now,
            "leased": self.backlog.leased,
            "oldest_due_age_seconds": (
                None if self.backlog.oldest_due_age is None else round(self.backlog.oldest_due_age)
            ),
            "beat_silent": self.beat_silent,
            "workers_missing": self.workers_missing,
        }


def read(redis: Any, prefix: str, now: float | None = None) -> Liveness:
    """Beat, workers and backlog as they are now."""
    moment = redis_now(redis) if now is None else now
    return Liveness(
        moment,
        last_tick(redis, prefix),
        live_workers(redis, prefix, moment),
        backlog(redis, prefix, moment),
        last_beat(redis, prefix),
    )


def format_age(seconds: float | None) -> str:
    """40 s, 3 min, 2 h, 5 days: an age at a glance."""
    if seconds is None:
        return "never"
    s = int(seconds)
    if s < 120:
        return f"{s} s"
    if s < 7200:
        return f"{s // 60} min"
    if s < 172800:
        return f"{s // 3600} h"
    return f"{s // 86400} days"


class Heartbeat:
    """A worker's heartbeat thread: `heartbeat` every `every` seconds, then `also()` (alerts).

    Neither may kill the thread: an error is logged and the next beat tries again. `stop`
    ends it and takes the worker off the list at once.
    """

    def __init__(
        self,
        redis: Any,
        prefix: str,
        hostname: str,
        every: float = HEARTBEAT_SECONDS,
        also: Callable[[], object] | None = None,
    ) -> None:
        self.redis, self.prefix, self.hostname, self.every = redis, prefix, hostname, every
        self.also = also
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)

    def start(self) -> Heartbeat:
        self._thread.start()
        return self

    def beat(self) -> None:
        for step in (lambda: heartbeat(self.redis, self.prefix, self.hostname), self.also):
            if step is None:
                continue
            try:
                step()
            except Exception:
                log.exception("heartbeat: %s failed", "check" if step is self.also else "beat")

    def _run(self) -> None:
        while True:
            self.beat()
            if self._stop.wait(self.every):
                return

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        try:
            forget_worker(self.redis, self.prefix, self.hostname)
        except Exception:
            log.warning("heartbeat: could not take %s off the list", self.hostname)
