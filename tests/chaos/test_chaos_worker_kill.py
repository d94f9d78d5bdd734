"""A real Celery worker SIGKILLed mid-burst (2,500 readers) while the stand-in's signed events
flow: the chunk the provider took is settled by its events, the one it never took is sent again
after the settle window (engine.absence), and every reader has part 1 exactly once."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import time_machine
from conftest import PEOPLE, SLOT, World, minutes
from engine_support import deliveries_of
from sendgrid_events import EventPoster
from sendgrid_fake import API_KEY, FakeSendGrid
from sqlalchemy import select
from waiting import wait_for

from newsletter.core.config import Settings, get_settings, load_settings
from newsletter.engine.absence import ABSENT_NOTE
from newsletter.store.db import session_scope
from newsletter.store.models import SENT, Delivery

pytestmark = pytest.mark.slow


@pytest.fixture
def world(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[World, EventPoster]]:
    """The stand-in with its Event Webhook posting signed events to the app (in this process;
    `flush_at` posts at a simulated moment); a lease of 5 s so a lost claim is found at once."""
    with FakeSendGrid() as fake:

        def post(raw: bytes, headers: dict[str, str]) -> int:
            from fastapi.testclient import TestClient

            from newsletter.web.app import create_app

            with TestClient(create_app(load_settings()), raise_server_exceptions=False) as client:
                return client.post("/webhooks/sendgrid", content=raw, headers=headers).status_code

        poster = EventPoster(fake, post)
        for name, value in {
            "MAIL_BACKEND": "sendgrid",
            "SENDGRID_HOST": fake.url,
            "SENDGRID_API_KEY": API_KEY,
            "SENDGRID_WEBHOOK_PUBLIC_KEY": poster.public_key,
            "BATCH_SIZE": "1000",
            "LEASE_SECONDS": "5",
        }.items():
            monkeypatch.setenv(f"NEWSLETTER_{name}", value)
        get_settings.cache_clear()
        w = World(load_settings(), tmp_path, fake)
        yield w, poster
        fake.release()
    get_settings.cache_clear()


class Worker:
    """`newsletter worker -c 2` in its own process group."""

    def __init__(self, log: Path) -> None:
        self.log = log
        self.p = subprocess.Popen(
            [sys.executable, "-m", "newsletter", "worker", "-c", "2"],
            stdout=log.open("ab"),
            stderr=subprocess.STDOUT,
            env=dict(os.environ),
            start_new_session=True,
        )
        wait_for(
            lambda: "ready." in self.text() or self.p.poll() is not None,
            "worker ready",
            timeout=180,
        )
        assert self.p.poll() is None, self.text()

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.p.poll() is None:
            os.killpg(self.p.pid, sig)
            self.p.wait(timeout=60)


def send_task(settings: Settings, name: str, **kwargs: object) -> None:
    from newsletter.tasks import make_app, queue_name

    app = make_app(settings)
    app.send_task(name, kwargs=kwargs, queue=queue_name(settings))
    app.close()


def flush_at(poster: EventPoster, moment: dt.datetime) -> int:
    """The stand-in posts its pending events, signed, at `moment` on the app's clock."""
    with time_machine.travel(moment, tick=True):
        return poster.flush()


def sent(settings: Settings) -> int:
    with session_scope(settings.database_url) as session:
        return len(list(session.scalars(select(Delivery.id).where(Delivery.status == SENT))))


def test_worker_sigkilled_mid_burst_with_events_flowing(
    world: tuple[World, EventPoster], tmp_path: Path
) -> None:
    w, poster = world
    fake = w.fake
    assert fake is not None
    w.seed()
    # two chunks in flight when the kill lands: the provider took one (its answer never came),
    # never took the other
    fake.hang_until_released(accept=True)
    fake.hang_until_released(accept=False)
    workers = [Worker(tmp_path / "worker-0.log")]
    try:
        send_task(w.settings, "newsletter.tick", now=SLOT.isoformat())
        wait_for(
            lambda: len(fake.requests) >= 2, "two requests hanging at the provider", timeout=180
        )
        workers[0].kill()  # the whole worker, mid-burst
        fake.release()
        taken = [r for r in fake.requests if r.status == 202]
        never = [r for r in fake.requests if r.status != 202]
        assert len(taken) == 1 and len(never) == 1 and len(taken[0].emails) == 1000
        workers.append(Worker(tmp_path / "worker-1.log"))
        # the third chunk: claimed, maybe never handed (its task died with the worker)
        w.reconcile(minutes(1))
        send_task(w.settings, "newsletter.tick", now=(SLOT + minutes(1)).isoformat())
        wait_for(lambda: sent(w.settings) >= PEOPLE - 2000, "the third chunk sent", timeout=180)
        assert (
            flush_at(poster, SLOT + minutes(2)) == PEOPLE - 1000
        )  # the accepted chunk's events and the third's
        taken_rows = deliveries_of(w.settings, taken[0].emails)
        assert {(d.status, d.attempts, d.last_error) for d in taken_rows} == {(SENT, 1, None)}
        assert {d.provider_message_id for d in taken_rows} == {taken[0].message_id}
        inside = w.reconcile(minutes(14))
        assert '"absent": 0' in inside.out, inside.out  # inside the window: nothing resent
        after = w.reconcile(minutes(16))
        assert '"absent": 1000' in after.out, after.out  # the settle window has passed
        send_task(w.settings, "newsletter.tick", now=(SLOT + minutes(16)).isoformat())
        wait_for(lambda: sent(w.settings) == PEOPLE, "every reader served", timeout=180)
    finally:
        for worker in workers:
            worker.kill(signal.SIGTERM)
    never_rows = deliveries_of(w.settings, never[0].emails)
    assert {(d.status, d.last_error) for d in never_rows} == {(SENT, ABSENT_NOTE)}
    assert max(d.sent_at for d in never_rows if d.sent_at) <= SLOT + minutes(17)
    w.check(parts=1)  # each reader part 1 exactly once, nothing left claimed


def test_sigterm_mid_chunk_finishes_the_chunk_and_leaves_nothing_handed(
    world: tuple[World, EventPoster], tmp_path: Path
) -> None:
    """SIGTERM to the worker (as `docker stop` sends it: the main process only) while the
    provider holds its request: Celery's warm shutdown lets the chunk finish and record its
    outcome, takes no new chunk, and exits 0."""
    w, _ = world
    fake = w.fake
    assert fake is not None
    w.seed(1000)
    fake.hang(4)  # the provider answers the request 4 s late (202): a chunk in hand
    worker = Worker(tmp_path / "worker.log")
    try:
        send_task(w.settings, "newsletter.tick", now=SLOT.isoformat())
        wait_for(
            lambda: len(fake.requests) == 1, "the chunk's request at the provider", timeout=180
        )
        worker.p.send_signal(signal.SIGTERM)
        assert worker.p.wait(timeout=120) == 0, worker.text()
    finally:
        worker.kill()
    assert "Warm shutdown" in worker.text()
    assert len(fake.accepted) == 1
    with session_scope(w.settings.database_url) as session:
        statuses = {d.status for d in session.scalars(select(Delivery))}
    assert statuses == {SENT}  # recorded: no row handed with an unknown outcome
    w.check(parts=1)
