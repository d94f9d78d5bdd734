"""Connections to Redis: the configured server, or an embedded one under var/redis; one client
per URL per process. No database here: providers (mail/) reach Redis through this module.

Without NEWSLETTER_REDIS_URL, `redis_client` uses an embedded redis-server under var/redis:
the one `newsletter run` started (its URL is exported to the children and written to
var/redis/url while it runs) or any other live one named there, else one started by this
process (same AOF directory, so the state carries over) and stopped when it exits.
"""

from __future__ import annotations

import atexit
from pathlib import Path

import redis

from newsletter.core.config import Settings
from newsletter.queue.embedded import EmbeddedRedis

_clients: dict[str, redis.Redis] = {}


def _embedded_url(settings: Settings) -> str:
    """The URL of the embedded Redis under var/redis, started when none answers."""
    directory = (Path(settings.var_dir) / "redis").resolve()
    url_file = directory / "url"
    if url_file.exists():
        url = url_file.read_text().strip()
        try:
            client = redis.Redis.from_url(url, socket_connect_timeout=0.5)
            client.ping()
            client.close()
            return url
        except redis.RedisError:
            pass
    # None running (no `newsletter run`): start one owned by this process; its AOF under
    # var/redis keeps the state for the next command. Others reuse it while it runs (never two
    # servers on one directory); it stops when this process exits. Processes that must outlive
    # each other (a worker and a beat) should use `newsletter run` or NEWSLETTER_REDIS_URL.
    server = EmbeddedRedis(directory)
    server.start()
    url_file.write_text(server.url)

    def stop() -> None:
        if url_file.exists() and url_file.read_text().strip() == server.url:
            url_file.unlink()
        server.stop()

    atexit.register(stop)
    return server.url


def redis_url(settings: Settings) -> str:
    return settings.redis_url or _embedded_url(settings)


def redis_client(settings: Settings) -> redis.Redis:
    """A shared client for this process (embedded Redis when no URL is configured)."""
    url = redis_url(settings)
    client = _clients.get(url)
    if client is None:
        client = _clients[url] = redis.Redis.from_url(url, decode_responses=True)
    return client
