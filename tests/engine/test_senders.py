"""The inline tick's sending processes (engine.senders): how many, and a sender's error."""

from __future__ import annotations

import gc
import os
from collections.abc import Sequence
from pathlib import Path

import pytest
from engine_support import Scripted, add_person, ledger, ship, use_backend, utc
from sqlalchemy import select

from newsletter.core.config import Settings
from newsletter.engine.senders import SenderLost, processes_for
from newsletter.engine.stopping import StopSignal, tick_until_stopped
from newsletter.engine.tick import tick
from newsletter.mail.message import Accepted, Message, Outcome, Recipient
from newsletter.store.db import session_scope
from newsletter.store.models import CLAIMED, RETRY, SENT, Delivery

MONDAY = utc(2027, 3, 1, 12)
TUESDAY_9 = utc(2027, 3, 2, 9)


def test_one_sender_per_core_unless_set(settings: Settings) -> None:
    cores = len(os.sched_getaffinity(0))
    assert processes_for(settings.model_copy(update={"tick_processes": 0})) == cores
    assert processes_for(settings.model_copy(update={"tick_processes": 3})) == 3


class Broken(Scripted):
    """A provider call that raises (a bug, not an answer): in a forked sender."""

    def send(self, message: Message, recipients: Sequence[Recipient]) -> list[Outcome]:
        raise RuntimeError("boom in the sender")


def test_a_sender_error_ends_the_tick_and_puts_back_what_was_not_handed(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sender's chunk stays handed (the provider call may have happened: reconcile's), every
    other claimed chunk goes back to retry, no new round is planned; the error is named."""
    s = settings.model_copy(update={"batch_size": 1, "tick_processes": 2})
    ship(s, MONDAY)
    for _ in range(4):
        add_person(s, MONDAY, "UTC")
    use_backend(monkeypatch, Broken([]))
    with StopSignal() as stop, pytest.raises(SenderLost) as lost:
        tick_until_stopped(s, TUESDAY_9, stop)
    assert "boom in the sender" in str(lost.value)
    with session_scope(s.database_url) as session:
        rows = [(d.status, d.retry_at is None) for d in session.scalars(select(Delivery))]
    handed = [r for r in rows if r == (CLAIMED, True)]
    assert 1 <= len(handed) <= 2  # the chunks in hand when the first error came back
    assert (CLAIMED, False) not in rows  # nothing claimed is left un-handed
    assert all(r in ((CLAIMED, True), (RETRY, False)) for r in rows), rows
    assert len(rows) < 4 or RETRY in {r[0] for r in rows}  # put back, or never claimed


def test_two_senders_send_every_chunk_once(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = settings.model_copy(update={"batch_size": 1, "tick_processes": 2})
    ship(s, MONDAY)
    for _ in range(5):
        add_person(s, MONDAY, "UTC")
    use_backend(monkeypatch, Scripted([Accepted(f"m-{i}") for i in range(5)]))
    with StopSignal() as stop:
        summary = tick_until_stopped(s, TUESDAY_9, stop)
    assert (summary.due, summary.sent, summary.retry) == (5, 5, 0)
    assert sorted(r[3] for r in ledger(s)) == [SENT] * 5
    assert tick(s, TUESDAY_9).sent == 0  # nothing left, nothing twice


def test_the_senders_fork_from_a_frozen_heap_and_the_tick_unfreezes_after(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Python's recipe for fork without exec: what the tick loaded is frozen before the fork, so
    a sender's first collection (settle_heap) walks only what the sender made, not the whole
    inherited heap (~50 ms of CPU per sender at start-up)."""
    from newsletter.engine import senders

    real_settle = senders.settle_heap

    def settle() -> None:  # in each sender, before its first collection
        Path(tmp_path, f"frozen-{os.getpid()}").write_text(str(gc.get_freeze_count()))
        real_settle()

    monkeypatch.setattr(senders, "settle_heap", settle)
    s = settings.model_copy(update={"batch_size": 1, "tick_processes": 2})
    ship(s, MONDAY)
    for _ in range(2):
        add_person(s, MONDAY, "UTC")
    use_backend(monkeypatch, Scripted([Accepted(f"m-{i}") for i in range(2)]))
    gc.unfreeze()
    loaded = len(gc.get_objects())
    with StopSignal() as stop:
        summary = tick_until_stopped(s, TUESDAY_9, stop)
    assert summary.sent == 2
    frozen = [int(p.read_text()) for p in tmp_path.glob("frozen-*")]
    assert len(frozen) == 2
    assert min(frozen) > loaded // 2  # the inherited heap, out of the sender's collections
    assert gc.get_freeze_count() == 0  # and the tick's own heap collected as before afterwards


def test_a_sender_loads_the_provider_client_and_the_templates_before_its_first_chunk(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """senders._warm, run in each sender while the tick plans its first round; a failure there
    is left for the chunk to meet and record (it never ends the sender)."""
    from newsletter.engine import senders
    from newsletter.mail import backends, render
    from newsletter.mail.render import shared_renderer

    monkeypatch.setattr(render, "_shared", {})  # no renderer an earlier test made
    made: list[str] = []
    monkeypatch.setattr(backends, "get_backend", lambda s: made.append(s.mail_backend))
    senders._warm(settings)
    assert made == [settings.mail_backend]
    loaded = {name for _, name in shared_renderer(settings).env.cache}  # type: ignore[union-attr]
    assert {"email/article.html", "email/article.txt"} <= loaded

    def refused(s: Settings) -> None:
        raise ValueError("NEWSLETTER_SENDGRID_API_KEY is not set")

    monkeypatch.setattr(backends, "get_backend", refused)
    senders._warm(settings)  # no error: the first chunk records it as a halt, as before
