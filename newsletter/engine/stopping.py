"""A stop that never leaves an unknown: SIGTERM ends an inline tick after the chunk in hand.

The signal only sets a flag (the provider call in progress is not interrupted: Python resumes
an interrupted socket read). The chunk in hand is sent and recorded as usual; every chunk the
tick would start afterwards goes back to retry, due a minute later (STOP_RETRY), untouched:
never handed, so the next tick sends it and nothing waits for evidence. A Celery worker gets
the same from Celery's warm shutdown (see `newsletter worker --help`); beat holds no rows.
"""

from __future__ import annotations

import datetime as dt
import signal
from types import FrameType, TracebackType

from newsletter.core.config import Settings
from newsletter.engine.plan import Chunk
from newsletter.engine.send import send_chunk
from newsletter.engine.summary import TickSummary
from newsletter.engine.tick import sweep
from newsletter.queue.dueset import RedisQueue
from newsletter.store import ledger
from newsletter.store.db import session_scope

STOP_RETRY = dt.timedelta(minutes=1)
STOP_NOTE = "the tick was stopped before this batch; sent by the next tick"


class StopSignal:
    """`with StopSignal() as stop:` SIGTERM (and SIGINT) set `stop.requested` instead of
    ending the process; the old handlers come back at the end."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self) -> None:
        self.requested = False
        self._old: dict[int, object] = {}

    def _set(self, signum: int, frame: FrameType | None) -> None:
        self.requested = True

    def __enter__(self) -> StopSignal:
        for sig in self.SIGNALS:
            self._old[sig] = signal.signal(sig, self._set)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)  # type: ignore[arg-type]


def tick_until_stopped(
    settings: Settings,
    now: dt.datetime,
    stop: StopSignal,
    *,
    wait_seconds: float = 0.0,
    queue: RedisQueue | None = None,
) -> TickSummary:
    """engine.tick.tick, but once `stop` is requested each further chunk goes back to retry.

    With more than one sender (engine.senders.processes_for) the chunks are sent by forked
    processes while this one plans the next round; SenderLost when one of them died."""
    from newsletter.engine.senders import Senders, processes_for  # builds on this module

    queue = queue or RedisQueue(settings)
    processes = processes_for(settings)
    if processes <= 1:

        def send(chunk: Chunk) -> TickSummary:
            if stop.requested:
                return put_back(settings, chunk, now, queue)
            return send_chunk(settings, chunk, now, queue=queue)

        summary, _ = sweep(settings, now, send, wait_seconds=wait_seconds, queue=queue)
        return summary

    with Senders(settings, now, processes, lambda: stop.requested) as senders:

        def hand_on(chunk: Chunk) -> TickSummary | None:
            senders.submit(chunk)  # or put back once stopped
            return None

        summary, _ = sweep(
            settings, now, hand_on, wait_seconds=wait_seconds, queue=queue,
            drain=senders.drain, more=senders.working,
        )  # fmt: skip
        senders.check(summary)
    return summary


def put_back(settings: Settings, chunk: Chunk, now: dt.datetime, queue: RedisQueue) -> TickSummary:
    """A claimed chunk the stopping tick will not send: retry at now + STOP_RETRY (not now, so
    this tick's next claim round does not take it again)."""
    later = now + STOP_RETRY
    with session_scope(settings.database_url) as session:
        back = ledger.back_to_retry(session, list(chunk.delivery_ids), later, now, STOP_NOTE)
        enrollments = ledger.enrollment_ids_of(session, sorted(back))
    queue.release(enrollments, later)
    summary = TickSummary()
    summary.retry = len(back)
    return summary
