"""A stopped inline tick (engine.stopping): SIGTERM mid-chunk finishes and records that chunk,
sends no other, and leaves no row handed with an unknown outcome."""

from __future__ import annotations

import datetime as dt
import os
import signal
from collections.abc import Sequence

import pytest
from engine_support import Scripted, add_person, ledger, ship, use_backend, utc

from newsletter.core.config import Settings
from newsletter.engine.stopping import StopSignal, tick_until_stopped
from newsletter.engine.tick import tick
from newsletter.mail.message import Accepted, Message, Outcome, Recipient
from newsletter.store.models import RETRY, SENT

MONDAY = utc(2027, 3, 1, 12)
TUESDAY_9 = utc(2027, 3, 2, 9)


class TermDuringFirstCall(Scripted):
    """SIGTERM arrives while the provider holds the first request; it answers all the same."""

    def send(self, message: Message, recipients: Sequence[Recipient]) -> list[Outcome]:
        if not self.calls:
            os.kill(os.getpid(), signal.SIGTERM)
        return super().send(message, recipients)


def test_sigterm_mid_chunk_finishes_it_and_puts_the_rest_back(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    one_a_chunk = settings.model_copy(update={"batch_size": 1})
    ship(one_a_chunk, MONDAY)
    for _ in range(3):
        add_person(one_a_chunk, MONDAY, "UTC")
    backend = TermDuringFirstCall([Accepted(f"m-{i}") for i in range(3)])
    use_backend(monkeypatch, backend)
    before = signal.getsignal(signal.SIGTERM)
    with StopSignal() as stop:
        summary = tick_until_stopped(one_a_chunk, TUESDAY_9, stop)
    assert stop.requested and signal.getsignal(signal.SIGTERM) is before
    assert (summary.sent, summary.retry) == (1, 2) and len(backend.calls) == 1
    rows = ledger(one_a_chunk)
    assert sorted(r[3] for r in rows) == [RETRY, RETRY, SENT]  # nothing handed, nothing unknown
    # the next tick, a minute later, sends the two put back
    later = tick(one_a_chunk, TUESDAY_9 + dt.timedelta(minutes=1))
    assert later.sent == 2 and len(backend.calls) == 3
    assert {r[3] for r in ledger(one_a_chunk)} == {SENT}
