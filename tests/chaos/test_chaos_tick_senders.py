"""`newsletter tick` with two sending processes (engine.senders), SIGKILLed at several points:
a sender mid-chunk (before the provider call, after its answer, before the outcome commit) and
the tick itself (right after a plan, and from outside while both senders wait for the provider).

Each time the next tick sends every reader whose row was not handed over, the rows a killed
sender had handed are the only ones left to reconcile (as after a single-process tick's kill),
a killed tick's senders finish and record the chunks in hand, and in the end every reader has
part 1 once (or twice with the documented resend) and part 2 once.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess

import pytest
from conftest import PEOPLE, World, at, hours, minutes
from sqlalchemy import func, select
from waiting import wait_for

from newsletter.store.db import session_scope
from newsletter.store.models import CLAIMED, SENT, Delivery

pytestmark = pytest.mark.chaos

BATCH = 500  # 2,500 readers: five chunks for two senders


@pytest.fixture
def world(sendgrid_world: World, monkeypatch: pytest.MonkeyPatch) -> World:
    monkeypatch.setenv("NEWSLETTER_TICK_PROCESSES", "2")
    monkeypatch.setenv("NEWSLETTER_BATCH_SIZE", str(BATCH))
    return sendgrid_world


def statuses(w: World) -> dict[str, int]:
    """Ledger rows by state: sent, handed (claimed, outcome unknown), claimed (never handed)."""
    with session_scope(w.settings.database_url) as session:
        found = session.execute(
            select(Delivery.status, Delivery.retry_at.is_(None), func.count())
            .where(Delivery.part_number == 1)
            .group_by(Delivery.status, Delivery.retry_at.is_(None))
        ).all()
    out: dict[str, int] = {}
    for status, no_retry_at, n in found:
        name = ("handed" if no_retry_at else "claimed") if status == CLAIMED else status
        out[name] = out.get(name, 0) + n
    return out


def part_two(w: World) -> None:
    summary = w.tick(WEEK_LATER)
    assert summary is not None and summary["sent"] == PEOPLE, summary


def tick_while_both_senders_wait(w: World) -> subprocess.Popen[str]:
    """`newsletter tick` started, returned once both senders are inside a provider call that
    answers 202 after 2 s (the tick still running)."""
    fake = w.fake
    assert fake is not None
    fake.then(202, delay=2.0).then(202, delay=2.0)
    proc = w.start("tick", "--now", at(minutes(0)), "--json")
    wait_for(
        lambda: len(fake.requests) >= 2 or proc.poll() is not None,
        "both senders inside their provider call",
        timeout=120,
        every=0.01,
    )
    assert proc.poll() is None, "the tick ended early"
    return proc


def next_ticks_send_the_rest(w: World) -> None:
    """After a killed tick: its lock expired, the next ticks and reconcile leave every reader
    with part 1 once, and part 2 goes out a week later."""
    w.expire_tick_lock()
    w.tick(minutes(5))
    w.reconcile(minutes(15))
    w.tick(minutes(15))
    assert statuses(w) == {SENT: PEOPLE}
    part_two(w)


WEEK_LATER = hours(24 * 7)

SENDER_KILLS = [
    # (point, nth): a sender is killed there; the tick survives, puts back what it holds
    ("after_handover", 2),  # handed, provider never called
    ("after_accept", 1),  # the provider took the chunk, no outcome recorded
    ("before_outcome_commit", 3),  # outcome in hand, its commit never happens
]


@pytest.mark.parametrize(("point", "nth"), SENDER_KILLS, ids=[k[0] for k in SENDER_KILLS])
def test_sender_killed(world: World, point: str, nth: int) -> None:
    w = world
    w.seed()
    assert w.fake is not None
    mark = w.tmp / "killed-at"
    w.cli("tick", "--now", at(minutes(0)), "--json", CHAOS_KILL_AT=point,
          CHAOS_KILL_NTH=str(nth), CHAOS_MARK=str(mark))  # fmt: skip
    lost = w.results.pop()  # the tick itself ends with an error, not killed
    assert mark.read_text() == point, lost.describe()
    assert lost.code == 1 and "sending process was killed (signal 9)" in lost.err, lost.describe()
    after_kill = statuses(w)
    # nothing claimed is left behind: only the killed sender's handed rows (one chunk at most)
    assert "claimed" not in after_kill, after_kill
    assert 0 < after_kill.get("handed", 0) <= BATCH, after_kill
    handed = after_kill["handed"]
    # the next tick (no lock to expire: the tick let go of it) sends everyone else
    nxt = w.tick(minutes(5))
    assert nxt is not None and nxt["failed"] == 0, nxt
    assert statuses(w) == {SENT: PEOPLE - handed, "handed": handed}
    w.reconcile(hours(25))  # no evidence either way: resent once, documented
    w.tick(hours(25))
    assert statuses(w) == {SENT: PEOPLE}
    part_two(w)
    w.check()


def test_tick_killed_after_a_plan(world: World) -> None:
    """The tick killed right after its third plan: the senders finish the two chunks in hand
    and record them; the round it had just claimed waits for reconcile, as it always did."""
    w = world
    w.seed()
    mark = w.tmp / "killed-at"
    w.tick(minutes(0), CHAOS_KILL_AT="after_plan", CHAOS_KILL_NTH="3", CHAOS_MARK=str(mark))
    assert w.results[-1].killed and mark.read_text() == "after_plan", w.results[-1].describe()
    w.killed += 1
    after_kill = statuses(w)
    assert "handed" not in after_kill, after_kill  # the senders finished their chunks
    assert after_kill.get("claimed", 0) <= BATCH, after_kill  # the one round it held
    next_ticks_send_the_rest(w)
    w.check()


def test_tick_killed_while_senders_wait_for_the_provider(world: World) -> None:
    """SIGKILL from outside while both senders wait for the provider's answer: they get it,
    record it and exit (nothing handed is left); the rest is sent by the next ticks."""
    w = world
    w.seed()
    proc = tick_while_both_senders_wait(w)
    os.kill(proc.pid, signal.SIGKILL)
    result = w.finish(proc, "tick")  # returns once the senders closed its output too
    assert result.killed, result.describe()
    w.killed += 1
    after_kill = statuses(w)
    assert "handed" not in after_kill, after_kill
    assert after_kill.get(SENT, 0) == len(w.mails()) == 2 * BATCH, after_kill
    assert after_kill.get("claimed", 0) <= BATCH, after_kill  # the round it held
    next_ticks_send_the_rest(w)
    w.check()


def test_tick_stopped_while_senders_wait_for_the_provider(world: World) -> None:
    """SIGTERM (as Ctrl-C or a service stop) while both senders wait for the provider: the two
    batches in hand are finished and recorded, every other claimed batch goes back, due a
    minute later; nothing is left handed and the next tick sends the rest."""
    w = world
    w.seed()
    proc = tick_while_both_senders_wait(w)
    os.kill(proc.pid, signal.SIGTERM)
    result = w.finish(proc, "tick")
    assert result.code == 0, result.describe()
    summary = json.loads(result.out.strip().splitlines()[-1])
    assert summary["sent"] == 2 * BATCH and summary["failed"] == 0, summary
    after_stop = statuses(w)
    assert "handed" not in after_stop and "claimed" not in after_stop, after_stop
    assert after_stop[SENT] == len(w.mails()) == 2 * BATCH, after_stop
    nxt = w.tick(minutes(5))
    assert nxt is not None and nxt["sent"] == PEOPLE - 2 * BATCH, nxt
    part_two(w)
    w.check()
