"""The inline tick's sending processes: forked children that each send one chunk at a time.

`newsletter tick` plans in its own process and hands each chunk to a free sender (a child
forked after the imports, before any lock or connection is taken), so planning the next round
and sending the chunks in hand run on all cores at once. Processes, not threads: the send path
is Python-bound (the GIL), and each sender has its own database and Redis connections.

Crashes leave nothing new to settle:
- a sender killed (SIGKILL, OOM) mid-chunk: the rows it had not handed over yet go back to
  retry a minute later (stopping.put_back, a compare-and-set on un-handed rows); the rows it
  had handed keep the unknown outcome a killed single-process tick leaves (reconcile settles
  them). The tick then puts back every chunk it holds, lets the other senders finish theirs,
  and ends with SenderLost: nothing is half-done and the next tick sends the rest;
- the tick itself killed: each sender finishes and records the chunk in hand (it notices the
  parent is gone within POLL_SECONDS), then exits; only the rows the tick had claimed and not
  passed on yet wait, as after a single-process tick's kill (reconcile, after the lease).
"""

from __future__ import annotations

import datetime as dt
import gc
import os
import signal
import traceback
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from multiprocessing import get_context
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from types import TracebackType
from typing import Any

from newsletter.core.config import Settings
from newsletter.core.heap import settle_heap
from newsletter.engine.plan import Chunk
from newsletter.engine.send import send_chunk
from newsletter.engine.summary import TickSummary
from newsletter.mail import backends
from newsletter.mail.render import shared_renderer
from newsletter.queue.dueset import RedisQueue
from newsletter.store.db import after_fork

POLL_SECONDS = 0.5  # how often an idle sender checks that its tick is still alive


class SenderLost(Exception):
    """A sending process died (killed, or an error) mid-chunk; `summary` is what the tick did."""

    def __init__(self, detail: str, summary: TickSummary) -> None:
        self.summary = summary
        super().__init__(
            f"a sending process {detail}; its un-sent rows go to the next tick, "
            "the rows it had handed over are settled by `newsletter reconcile`"
        )


def processes_for(settings: Settings) -> int:
    """How many senders: NEWSLETTER_TICK_PROCESSES, else one per core (1: send in-process)."""
    return settings.tick_processes or len(os.sched_getaffinity(0))


def _serve(conn: Connection, settings: Settings, now: dt.datetime, parent: int) -> None:
    """A sender's loop: a chunk in, its summary (or an error's text) out, until told to stop
    or its tick is gone. SIGINT/SIGTERM are the tick's to handle: the chunk in hand is always
    finished and recorded."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    after_fork()
    settle_heap()
    _warm(settings)
    queue = RedisQueue(settings)
    while True:
        if not conn.poll(POLL_SECONDS):
            if os.getppid() != parent:
                return
            continue
        try:
            chunk = conn.recv()
        except EOFError:
            return
        if chunk is None:
            return
        answer: TickSummary | str
        try:
            answer = send_chunk(settings, chunk, now, queue=queue)
        except Exception:
            answer = traceback.format_exc()
        try:
            conn.send(answer)
        except OSError:  # the tick is gone; the chunk is recorded all the same
            return
        if not isinstance(answer, TickSummary):
            return


def _warm(settings: Settings) -> None:
    """What a sender's first chunk would load on its own clock, loaded while the tick plans
    its first round: the provider's client (its module: ~45 ms) and the article's compiled
    templates (~10 ms). A failure here changes nothing: the chunk meets it again and records
    it as every chunk does (a halt, a retry)."""
    with suppress(Exception):
        backends.get_backend(settings)
    with suppress(Exception):
        shared_renderer(settings).load("article")


@dataclass
class _Sender:
    process: BaseProcess
    conn: Connection
    chunk: Chunk | None = None  # the chunk in hand


class Senders:
    """`with Senders(settings, now, n) as senders:` sweep(..., drain=senders.drain, more=...).

    submit(chunk) waits for a free sender and passes the chunk on (None: its summary comes
    from drain()); drain() waits for every chunk in hand and returns their summaries."""

    def __init__(
        self,
        settings: Settings,
        now: dt.datetime,
        processes: int,
        stopping: Callable[[], bool] = lambda: False,
    ) -> None:
        self.settings = settings
        self.stopping = stopping  # a stop requested: chunks not passed on yet go back
        self.now = now
        self.count = processes
        self.queue = RedisQueue(settings)
        self.summary = TickSummary()
        self.lost: str | None = None
        self._senders: list[_Sender] = []

    def __enter__(self) -> Senders:
        context = get_context("fork")
        parent = os.getpid()
        # Python's recipe for fork without exec: the start-up's objects frozen first, so a
        # sender's first collection (settle_heap) skips them instead of walking (and copying)
        # the whole inherited heap: ~50 ms of CPU per sender. Unfrozen again in __exit__.
        gc.freeze()
        for _ in range(self.count):
            mine, theirs = context.Pipe()
            process = context.Process(
                target=_serve, args=(theirs, self.settings, self.now, parent), daemon=True
            )
            process.start()
            theirs.close()
            self._senders.append(_Sender(process, mine))
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Every chunk in hand finished (an error unwinding here too: no sender is left
        mid-chunk by the tick), then the senders told to stop and reaped."""
        self._collect(block_all=True)
        for sender in self._senders:
            with suppress(OSError):  # a dead sender's pipe is closed
                sender.conn.send(None)
        for sender in self._senders:
            sender.process.join()
            sender.conn.close()
        gc.unfreeze()

    def submit(self, chunk: Chunk) -> None:
        """Pass `chunk` to a free sender; put it back for the next tick instead once a sender
        was lost or a stop was requested (while it waited for a free one, too)."""
        while self.lost is None and not self.stopping():
            free = [s for s in self._senders if s.chunk is None]
            if free:
                try:
                    free[0].conn.send(chunk)
                except OSError:  # died while idle: nothing in hand to put back
                    free[0].process.join()
                    self.lost = f"exited while idle (exit status {free[0].process.exitcode})"
                    break
                free[0].chunk = chunk
                return
            self._collect(block_all=False)
        self._put_back(chunk)

    def working(self) -> bool:
        """Whether the tick should plan another round (not once a sender was lost)."""
        return self.lost is None

    def drain(self) -> TickSummary:
        """Wait for every chunk in hand; what the senders did (and the chunks put back)."""
        self._collect(block_all=True)
        summary, self.summary = self.summary, TickSummary()
        return summary

    def check(self, summary: TickSummary) -> None:
        """SenderLost (with the tick's `summary`) if a sender was lost."""
        if self.lost is not None:
            raise SenderLost(self.lost, summary)

    def _collect(self, *, block_all: bool) -> None:
        """Wait until one sender is done (or all, block_all), adding up what they report."""
        while True:
            busy = {s.conn: s for s in self._senders if s.chunk is not None}
            if not busy:
                return
            for conn in wait(list(busy)):
                self._answer(busy[conn])  # type: ignore[index]
            if not block_all:
                return

    def _answer(self, sender: _Sender) -> None:
        chunk = sender.chunk
        assert chunk is not None
        sender.chunk = None
        try:
            answer: Any = sender.conn.recv()
        except (EOFError, OSError):
            sender.process.join()
            code = sender.process.exitcode
            if code is not None and code < 0:
                self._lose(f"was killed (signal {-code})", chunk)
            else:
                self._lose(f"exited ({code})", chunk)
            return
        if isinstance(answer, TickSummary):
            self.summary.add(answer)
        else:
            self._lose(f"failed:\n{answer}", chunk)

    def _lose(self, detail: str, chunk: Chunk) -> None:
        if self.lost is None:
            self.lost = detail
        self._put_back(chunk)

    def _put_back(self, chunk: Chunk) -> None:
        from newsletter.engine.stopping import put_back  # stopping builds on this module

        self.summary.add(put_back(self.settings, chunk, self.now, self.queue))
