"""The provider's send budget, shared in Redis by every worker: one token per request."""

from __future__ import annotations

import logging
import math
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from newsletter.core.config import Settings
from newsletter.queue.connection import redis_url

log = logging.getLogger(__name__)

MAX_WAIT = 5.0  # seconds a request may wait for the budget in the worker; beyond: RetryLater
MAX_HORIZON = 3600.0  # a reset further ahead than this (clock skew, a bogus header) is cut to it
REDIS_TIMEOUT = 1.0  # seconds: an unreachable Redis must not hold up sending
TICKET_SECONDS = 60.0  # a request's ticket expires after this (its worker died mid-request)
OUTAGE_SECONDS = 30.0  # after Redis failed, send unthrottled this long before asking it again
POLL_SECONDS = 0.05  # a new window's `limit` is in flight: wait this long for answers

# KEYS[1]: the budget hash {limit, remaining, reset (epoch seconds)} as the provider last said.
# KEYS[2]: requests on their way (ZSET ticket -> expiry): not yet counted in `remaining`, so
# they are taken off it; a ticket a dead worker never handed back expires.
# ARGV: now, ticket, ticket expiry, poll seconds. Returns "" (go: the ticket is in flight) or the
# moment (epoch seconds) to try again (nothing taken). No budget known (no headers yet): go.
# A window whose reset has passed has `limit` again, less what is in flight; when that is used
# up, wait a moment for answers.
TAKE = """
local now = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
local inflight = redis.call('ZCARD', KEYS[2])
local state = redis.call('HMGET', KEYS[1], 'remaining', 'reset', 'limit')
local remaining, reset, limit = tonumber(state[1]), tonumber(state[2]), tonumber(state[3])
if remaining ~= nil and reset ~= nil then
  if now < reset then
    if remaining - inflight <= 0 then return state[2] end
  elseif limit ~= nil and limit - inflight <= 0 then
    return tostring(now + tonumber(ARGV[4]))
  end
end
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[2])
redis.call('PEXPIRE', KEYS[2], math.ceil((tonumber(ARGV[3]) - now) * 1000) + 1000)
return ''
"""

# KEYS as TAKE. ARGV: now, ticket ('' for none), limit, remaining, reset ('' when the answer
# had no usable X-RateLimit-* headers: only the ticket is handed back). Answers arrive out of
# order: within one window the lowest remaining wins (it counted the most requests); an answer
# about an older window than the stored one is ignored.
RECORD = """
if ARGV[2] ~= '' then redis.call('ZREM', KEYS[2], ARGV[2]) end
if ARGV[5] == '' then return 0 end
local now, remaining, reset = tonumber(ARGV[1]), tonumber(ARGV[4]), tonumber(ARGV[5])
if reset <= now then return 0 end
local state = redis.call('HMGET', KEYS[1], 'remaining', 'reset')
local old_remaining, old_reset = tonumber(state[1]), tonumber(state[2])
if old_remaining ~= nil and old_reset ~= nil and old_reset > now then
  if reset < old_reset then return 0 end
  if reset == old_reset and old_remaining < remaining then remaining = old_remaining end
end
redis.call('HSET', KEYS[1], 'limit', ARGV[3], 'remaining', remaining, 'reset', ARGV[5])
redis.call('PEXPIRE', KEYS[1], math.ceil((reset - now) * 1000) + 3600000)
return 1
"""

_clients: dict[str, redis.Redis] = {}
_clients_lock = threading.Lock()


def _header(headers: Any, name: str) -> str | None:
    """One header from an HTTPMessage (case-insensitive) or a plain mapping."""
    if headers is None:
        return None
    try:
        value = headers.get(name)
        if value is None and isinstance(headers, Mapping):
            value = next((v for k, v in headers.items() if str(k).lower() == name.lower()), None)
    except (AttributeError, TypeError):
        return None
    return None if value is None else str(value)


def parse_headers(headers: Any) -> tuple[int | None, int, float] | None:
    """(limit, remaining, reset epoch seconds) from X-RateLimit-*; None when any is unusable."""
    raw_remaining = _header(headers, "X-RateLimit-Remaining")
    raw_reset = _header(headers, "X-RateLimit-Reset")
    raw_limit = _header(headers, "X-RateLimit-Limit")
    if raw_remaining is None or raw_reset is None:
        return None
    try:
        remaining = int(raw_remaining.strip())
        reset = float(raw_reset.strip())
        limit = int(raw_limit.strip()) if raw_limit is not None else None
    except ValueError:
        return None
    if remaining < 0 or not math.isfinite(reset):
        return None
    return limit, remaining, reset


def settings_client(settings: Settings) -> redis.Redis:
    """A client for the configured (or embedded) Redis with short timeouts, one per process."""
    url = redis_url(settings)
    with _clients_lock:
        client = _clients.get(url)
        if client is None:
            client = _clients[url] = redis.Redis.from_url(
                url,
                decode_responses=True,
                socket_connect_timeout=REDIS_TIMEOUT,
                socket_timeout=REDIS_TIMEOUT,
                retry=Retry(NoBackoff(), 0),  # redis-py's default retries would hold up sending
            )
    return client


@dataclass(frozen=True)
class Turn:
    """`acquire`'s answer: go now (hand `ticket` back to `record`), or not before `retry_at`."""

    ticket: str | None = None
    retry_at: float | None = None  # epoch seconds; None: go

    @property
    def go(self) -> bool:
        return self.retry_at is None


class Throttle:
    """The shared budget under one Redis key: `acquire` before each request, `record` after.

    `client` is a Redis client or a callable making one (called on first use, so a backend can
    be built without Redis). When Redis can't be reached, the throttle lets every request go
    (logged once per outage) and leaves Redis alone for OUTAGE_SECONDS: the provider's own 429
    still protects.
    """

    def __init__(
        self,
        client: redis.Redis | Callable[[], redis.Redis],
        key: str,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        max_wait: float = MAX_WAIT,
        ticket_seconds: float = TICKET_SECONDS,
    ) -> None:
        self._client = client if isinstance(client, redis.Redis) else None
        self._factory = None if isinstance(client, redis.Redis) else client
        self.keys = [key, f"{key}:inflight"]
        self.clock = clock
        self.sleep = sleep
        self.max_wait = max_wait
        self.ticket_seconds = ticket_seconds
        self._scripts: tuple[Any, Any] | None = None
        self._down = False
        self._skip_until = -math.inf  # clock() before which Redis is not asked (an outage)

    @classmethod
    def for_settings(cls, settings: Settings, **kw: Any) -> Throttle:
        return cls(
            lambda: settings_client(settings), f"{settings.redis_prefix}sendgrid:ratelimit", **kw
        )

    def _run(self, which: int, args: list[str]) -> Any:
        """Run TAKE (0) or RECORD (1); None when Redis is unreachable (logged once)."""
        if self.clock() < self._skip_until:
            return None
        try:
            if self._scripts is None:
                if self._client is None:
                    assert self._factory is not None
                    self._client = self._factory()
                self._scripts = (
                    self._client.register_script(TAKE),
                    self._client.register_script(RECORD),
                )
            result = self._scripts[which](keys=self.keys, args=args)
        except (redis.RedisError, OSError, RuntimeError) as exc:
            self._skip_until = self.clock() + OUTAGE_SECONDS
            if not self._down:
                self._down = True
                log.warning("send throttle: Redis unreachable, sending unthrottled (%s)", exc)
            return None
        if self._down:
            self._down = False
            log.info("send throttle: Redis reachable again")
        return result

    def _take(self) -> tuple[str | None, float, float]:
        """One atomic try: (ticket, now, 0.0) when the request may go, else (None, now, the
        moment to try again). The ticket is None when Redis could not be reached (go anyway)."""
        now = self.clock()
        ticket = secrets.token_hex(8)
        args = [repr(now), ticket, repr(now + self.ticket_seconds), repr(POLL_SECONDS)]
        result = self._run(0, args)
        if result is None:
            return None, now, 0.0
        if isinstance(result, bytes):
            result = result.decode()
        return (ticket, now, 0.0) if result == "" else (None, now, float(result))

    def take(self) -> tuple[str | None, float]:
        """One atomic try: (ticket, 0.0) when the request may go, else (None, seconds to wait)."""
        ticket, now, until = self._take()
        return (ticket, 0.0) if ticket is not None or until == 0.0 else (None, until - now)

    def acquire(self) -> Turn:
        """Take a turn, waiting up to `max_wait` in all. When the budget is used up for longer,
        don't send: `retry_at` is the reset."""
        waited = 0.0
        while True:
            ticket, now, until = self._take()
            if until == 0.0:
                return Turn(ticket=ticket)
            wait = max(0.0, until - now)
            if waited + wait > self.max_wait:
                return Turn(retry_at=until)
            self.sleep(wait)
            waited += wait

    def record(self, headers: Any, ticket: str | None = None) -> None:
        """The answer to a request: hand its ticket back and store what the provider said about
        the budget (X-RateLimit-* on any answer), if anything. `headers` None: no answer."""
        parsed = parse_headers(headers)
        if parsed is None and ticket is None:
            return
        now = self.clock()
        limit: int | None = None
        remaining = reset = ""
        if parsed is not None:
            limit, left, at = parsed
            remaining, reset = str(left), repr(min(at, now + MAX_HORIZON))
        self._run(
            1, [repr(now), ticket or "", "" if limit is None else str(limit), remaining, reset]
        )
