"""What a doctor check reports (a level and one line saying what to do), and what checks share."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from newsletter.core.config import Settings

ERROR, WARNING, OK = "error", "warning", "ok"
LEVELS = (ERROR, WARNING, OK)  # worst first


@dataclass(frozen=True)
class Finding:
    """One result: `check` names what was looked at, `message` says what to do, in one line."""

    check: str
    level: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"check": self.check, "level": self.level, "message": self.message}


def error(check: str, message: str) -> Finding:
    return Finding(check, ERROR, message)


def warning(check: str, message: str) -> Finding:
    return Finding(check, WARNING, message)


def ok(check: str, message: str) -> Finding:
    return Finding(check, OK, message)


class Resolver(Protocol):
    """The part of `dns.resolver.Resolver` the DNS checks use (tests inject a stub)."""

    def resolve(self, qname: str, rdtype: str, *, lifetime: float | None = ...) -> Any: ...


@dataclass
class Context:
    """What the checks read: the effective settings (the entry point made them, with the values
    saved on the Settings page: store.practice.effective_settings), a DNS resolver (default: the
    system's, built on first use), the DNS timeout, and one Redis connection shared by the Redis
    and liveness checks."""

    settings: Settings
    resolver: Resolver | None = None
    dns_timeout: float = 3.0
    redis_timeout: float = 3.0
    _redis: Any = field(default=None, repr=False)

    def dns(self) -> Resolver:
        if self.resolver is None:
            import dns.resolver  # dnspython

            self.resolver = dns.resolver.Resolver()
        return self.resolver

    def redis_url(self) -> str | None:
        """The configured Redis, else the embedded one `newsletter run` started (var/redis/url);
        None when neither: the doctor never starts a server of its own."""
        if self.settings.redis_url:
            return self.settings.redis_url
        url_file = self.settings.var_dir / "redis" / "url"
        return url_file.read_text().strip() if url_file.exists() else None

    def redis(self) -> Any:
        """A client for `redis_url()` (raises redis.RedisError when it does not answer)."""
        if self._redis is None:
            import redis

            url = self.redis_url()
            if url is None:
                raise redis.ConnectionError("no Redis configured or running")
            client = redis.Redis.from_url(
                url,
                decode_responses=True,
                socket_timeout=self.redis_timeout,
                socket_connect_timeout=self.redis_timeout,
            )
            client.ping()
            self._redis = client
        return self._redis

    def close(self) -> None:
        if self._redis is not None:
            self._redis.close()
            self._redis = None
