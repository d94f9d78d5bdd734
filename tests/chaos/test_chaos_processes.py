"""Process-level faults: Redis flushed and restarted mid-retry, two ticks racing, SMTP faults."""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from conftest import MYTHS, PEOPLE, WEEK, World, at, hours, minutes
from engine_support import delete_prefixed
from invariants import Mail, check
from smtp_server import DROP, DroppingRecorder, SmtpServer
from sqlalchemy import select

from newsletter.core.config import Settings, get_settings, load_settings
from newsletter.store.db import session_scope
from newsletter.store.models import Part, Series

pytestmark = pytest.mark.chaos


def wait_for_file(folder: Path, pattern: str, alive: Callable[[], bool]) -> list[Path]:
    """Block until a file matching `pattern` appears in `folder` (written by a racing process),
    or no process is left that could write it."""
    while True:
        found = sorted(folder.glob(pattern))
        if found or not alive():
            return found
        time.sleep(0.01)  # a poll interval, not a wait for something to happen in time


def ended(procs: list[subprocess.Popen[str]]) -> str:
    """What the racing processes printed, for a failure message: any still running is killed
    first, so reading its output cannot block (a held winner waits for `release` forever)."""
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
    return repr([proc.communicate(timeout=60) for proc in procs])


def test_redis_flushed_and_restarted_while_rows_wait(
    sendgrid_world: World, own_redis: Callable[[], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """(5) All 2,500 wait for a retry (500s) when Redis loses everything: every key, then a
    restart of the server (its own, no persistence). The database is the truth: nobody lost,
    nobody twice."""
    w = sendgrid_world
    url = own_redis()
    monkeypatch.setenv("NEWSLETTER_REDIS_URL", url)
    get_settings.cache_clear()
    w.settings = load_settings()
    w.seed()
    assert w.fake is not None
    for _ in range(4):
        w.fake.server_error(500)
    first = w.tick(minutes(0))
    assert first is not None and first["retry"] == PEOPLE and first["sent"] == 0, first
    client = redis.Redis.from_url(url)
    assert client.connection_pool.connection_kwargs["port"] != 6379  # never the shared server
    # everything lost: the run's keys deleted by its prefix (nothing else is on this test's own
    # redis-server, so it is then empty), never a FLUSHALL that could reach another run's keys
    assert delete_prefixed(url, w.settings.redis_prefix) > 0
    assert client.dbsize() == 0
    client.close()
    after_flush = w.tick(minutes(5))  # rebuilds from the database; the 4th 500 hits one chunk
    assert after_flush is not None and after_flush["sent"] == 1500, after_flush
    own_redis()  # restart: an empty server on the same port
    w.reconcile(minutes(10))
    rest = w.tick(hours(2))
    assert rest is not None and rest["sent"] == 1000, rest
    summary = w.tick(WEEK)
    assert summary is not None and summary["sent"] == PEOPLE, summary
    w.check()


def test_two_ticks_race(sendgrid_world: World, tmp_path: Path) -> None:
    """(7) Two ticks started together (barrier file). The winner is held just after its claim,
    so the other certainly meets the lock: it exits non-zero naming the lock's age, sends
    nothing; the winner then sends all 2,500 once."""
    w = sendgrid_world
    w.seed()
    sync = tmp_path / "sync"
    sync.mkdir()
    args = ("tick", "--now", at(), "--json")
    env = {"CHAOS_BARRIER": str(sync), "CHAOS_HOLD_DIR": str(sync)}
    procs = [w.start(*args, **env) for _ in range(2)]
    both_alive = lambda: all(p.poll() is None for p in procs)  # noqa: E731
    both_ready = lambda: len(list(sync.glob("ready-*"))) == 2  # noqa: E731
    wait_for_file(sync, "go", lambda: both_alive() and not both_ready())
    assert both_ready(), ended(procs)
    (sync / "go").write_text("")
    # the loser may meet the lock and exit before the winner's claim is done: wait while either
    # runs (waiting only while both ran once read "no claim" and then hung reading the winner)
    holding = wait_for_file(sync, "holding-*", lambda: any(p.poll() is None for p in procs))
    assert holding, "no tick reached its claim: " + ended(procs)
    winner_pid = int(holding[0].name.split("-")[1])
    winner = next(p for p in procs if p.pid == winner_pid)
    loser = next(p for p in procs if p is not winner)
    lost = w.finish(loser, *args)
    assert lost.code != 0 and re.search(r"lock", lost.out + lost.err), lost.describe()
    assert re.search(r"\d+ ?s", lost.out + lost.err), "the message names the lock's age"
    (sync / "release").write_text("")
    won = w.finish(winner, *args)
    assert won.code == 0, won.describe()
    assert '"sent": 2500' in won.out, won.out
    summary = w.tick(WEEK)
    assert summary is not None and summary["sent"] == PEOPLE, summary
    w.check()


SMTP_PEOPLE = 300  # see test_smtp_faults


@pytest.fixture
def smtp_world(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[World, DroppingRecorder]]:
    recorder = DroppingRecorder()
    with SmtpServer(handler=recorder) as server:
        monkeypatch.setenv("NEWSLETTER_MAIL_BACKEND", "smtp")
        monkeypatch.setenv("NEWSLETTER_SMTP_URL", server.url)
        monkeypatch.setenv("NEWSLETTER_BATCH_SIZE", "100")
        get_settings.cache_clear()
        yield World(load_settings(), tmp_path, None), recorder
    get_settings.cache_clear()


def smtp_mails(world: World, recorder: DroppingRecorder) -> list[Mail]:
    """What the SMTP server accepted: the address from RCPT TO, the ledger row from the
    Message-ID (`<delivery id>.<random>@domain`), the part from the Subject (its title)."""
    with session_scope(world.settings.database_url) as session:
        titles = {
            title: (slug, number)
            for title, slug, number in session.execute(
                select(Part.title, Series.slug, Part.number).join(Series)
            )
        }
    mails = []
    for order, received in enumerate(recorder.received):
        message = received.message
        slug, number = titles[str(message["Subject"])]
        delivery_id = int(str(message["Message-ID"]).strip("<>").split(".")[0])
        mails.append(Mail(received.rcpt_tos[0].lower(), delivery_id, slug, number, order))
    return mails


def test_smtp_faults(smtp_world: tuple[World, DroppingRecorder]) -> None:
    """(8) SMTP against aiosmtpd: a 451 on the first message, and the connection dropped after
    DATA of the 51st (the server took it; the client never got the reply). 300 people in
    batches of 100 (three chunks, like the SendGrid tests' three requests): SMTP sends one
    message per person over one connection, so 2,500 would cost seconds per tick on two cores
    without reaching any path 300 does not. The 451 is a plain retry; the dropped message is an
    unknown outcome: not resent blindly, resent once after 24 h, saying why."""
    w, recorder = smtp_world
    w.seed(SMTP_PEOPLE)
    recorder.replies.extend(["451 4.3.0 Try again later", *[None] * 49, DROP])
    first = w.tick(minutes(0))
    assert first is not None and first["failed"] == 0, first
    dropped = recorder.received[49]
    later = w.tick(hours(1))  # 4xx and never-attempted rows go now; the dropped one must not
    assert later is not None and later["failed"] == 0, later
    assert sum(r.rcpt_tos == dropped.rcpt_tos for r in recorder.received) == 1
    w.reconcile(hours(25))
    w.tick(hours(25))
    summary = w.tick(WEEK)
    assert summary is not None and summary["sent"] == SMTP_PEOPLE, summary
    check(
        w.settings.database_url,
        smtp_mails(w, recorder),
        due=w.people,
        series=MYTHS,
        parts=2,
        results=w.results,
    )
