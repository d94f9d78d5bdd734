"""The tick: the one loop that claims, plans and sends everything due, one bounded batch at a time."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from newsletter.core.config import Settings
from newsletter.engine.plan import Chunk, plan
from newsletter.engine.send import send_chunk
from newsletter.engine.summary import TickSummary
from newsletter.queue.dueset import RedisQueue
from newsletter.queue.ticklock import TickLock
from newsletter.store.db import session_scope
from newsletter.store.halt import halted
from newsletter.store.models import utcnow

MAX_ROUNDS = 100_000  # a tick stops after this many claim rounds (never reached in practice)


def sweep(
    settings: Settings,
    now: dt.datetime,
    send: Callable[[Chunk], TickSummary | None],
    *,
    wait_seconds: float = 0.0,
    queue: RedisQueue | None = None,
    drain: Callable[[], TickSummary] | None = None,
    more: Callable[[], bool] = lambda: True,
) -> tuple[TickSummary, int]:
    """The one tick loop: hold the tick lock, claim and plan due work one batch at a time, hand
    each chunk to `send` (inline: send_chunk, or a sending process that reports through
    `drain`, waited for before the lock is let go; Celery: a send task; both return None).
    Another round is planned while `more()` says so. Returns (summary, chunks handed on).
    Raises TickLocked when another tick holds the lock (after waiting up to `wait_seconds`);
    does nothing while sending is halted."""
    queue = queue or RedisQueue(settings)
    summary = TickSummary()
    chunks = 0
    with session_scope(settings.database_url) as session:
        if halted(session, settings) is not None:
            return summary, chunks
    with TickLock(queue.redis, queue.lock_key).hold(wait_seconds):
        for _ in range(MAX_ROUNDS):
            result = plan(settings, now, queue=queue)
            summary.due += result.claimed
            summary.skipped += result.skipped
            for chunk in result.chunks:
                chunks += 1
                done = send(chunk)
                if done is not None:
                    summary.add(done)
            if result.claimed < settings.batch_size or not more():
                break
        if drain is not None:
            summary.add(drain())
    return summary, chunks


def tick(
    settings: Settings,
    now: dt.datetime | None = None,
    *,
    wait_seconds: float = 0.0,
    queue: RedisQueue | None = None,
) -> TickSummary:
    """Send everything due at or before `now`, inline, one bounded batch at a time.

    Only one tick runs at a time: TickLocked when another holds the lock after `wait_seconds`.
    """
    moment = now or utcnow()
    queue = queue or RedisQueue(settings)
    summary, _ = sweep(
        settings,
        moment,
        lambda chunk: send_chunk(settings, chunk, moment, queue=queue),
        wait_seconds=wait_seconds,
        queue=queue,
    )
    return summary
