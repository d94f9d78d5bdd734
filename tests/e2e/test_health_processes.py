"""A real Celery worker (prefork pool, 2 processes): its heartbeat, its multi-process metrics files
read by /metrics after a send, the tick it records, and leaving the list when it stops."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from engine_support import add_person, outbox_mails, ship
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr
from sqlalchemy import update
from waiting import wait_for

from newsletter.core.config import Settings
from newsletter.queue import liveness
from newsletter.queue.dueset import RedisQueue
from newsletter.store.db import session_scope
from newsletter.store.models import ENROLLED_ACTIVE, Enrollment
from newsletter.web.app import create_app

pytestmark = pytest.mark.slow


def sends(c: TestClient) -> float:
    response = c.get("/metrics", headers={"Authorization": "Bearer t"})
    assert response.status_code == 200
    return sum(
        s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
        if s.name == "newsletter_sends_total" and s.labels == {"outcome": "sent"}
    )


def test_a_worker_heartbeats_counts_its_sends_in_files_and_leaves(
    settings: Settings, tmp_path: Path
) -> None:
    redis = RedisQueue(settings).redis
    now = dt.datetime.fromtimestamp(liveness.redis_now(redis), dt.UTC)
    ship(settings, now - dt.timedelta(days=10))
    for _ in range(5):
        add_person(settings, now - dt.timedelta(days=10), "UTC")
    with session_scope(settings.database_url) as session:
        session.execute(
            update(Enrollment)
            .where(Enrollment.state == ENROLLED_ACTIVE)
            .values(next_due_at=now - dt.timedelta(minutes=1))
        )
        RedisQueue(settings).rebuild(session)
    web = TestClient(create_app(settings.model_copy(update={"metrics_token": SecretStr("t")})))
    named = web.get("/healthz", headers={"Authorization": "Bearer t"}).json()
    assert named["workers"] == "error: none alive while 5 wait"
    before = sends(web)

    log = (tmp_path / "worker.log").open("wb")
    worker = subprocess.Popen(
        [sys.executable, "-m", "newsletter", "worker", "-c", "2"],
        env=dict(os.environ),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_for(lambda: liveness.live_workers(redis, settings.redis_prefix), "a heartbeat")
        assert web.get("/healthz").status_code == 200
        from newsletter.tasks import make_app, queue_name

        app = make_app(settings)
        app.send_task(
            "newsletter.tick", kwargs={"now": now.isoformat()}, queue=queue_name(settings)
        )
        app.close()
        wait_for(lambda: len(outbox_mails(settings)) == 5, "5 sent")
        wait_for(lambda: sends(web) - before == 5, "the pool's files to show 5 sends")
        assert list((settings.var_dir / "metrics").glob("*.db"))  # written by the pool
        tick = liveness.last_tick(redis, settings.redis_prefix)
        assert tick is not None and tick.summary["due"] == 5 and tick.summary["chunks"] == 1
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(timeout=60)
        log.close()
    assert liveness.live_workers(redis, settings.redis_prefix) == []  # left at shutdown
    text = (tmp_path / "worker.log").read_text()
    assert "@example.org" not in text and "chunk done" in text


def test_a_worker_emails_the_admin_once_about_a_halt(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The heartbeat thread looks for problems: a halt reaches NEWSLETTER_ADMIN_EMAIL, once."""
    from newsletter.store.halt import halt

    monkeypatch.setenv("NEWSLETTER_ADMIN_EMAIL", "therapist@practice.test")
    with session_scope(settings.database_url) as session:
        halt(session, "the provider answered 401")
    redis = RedisQueue(settings).redis
    log = (tmp_path / "worker.log").open("wb")
    worker = subprocess.Popen(
        [sys.executable, "-m", "newsletter", "worker", "-c", "1"],
        env=dict(os.environ),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_for(lambda: outbox_mails(settings), "the alert email")
        wait_for(lambda: liveness.live_workers(redis, settings.redis_prefix), "a heartbeat")
        first = liveness.live_workers(redis, settings.redis_prefix, ttl=1e9)
        seen = redis.zscore(f"{settings.redis_prefix}workers", first[0])
        wait_for(  # one more heartbeat (and look for problems) after the email
            lambda: redis.zscore(f"{settings.redis_prefix}workers", first[0]) != seen,
            "the next heartbeat",
            timeout=60,
        )
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(timeout=60)
        log.close()
    mails = outbox_mails(settings)
    assert len(mails) == 1, [m["Subject"] for m in mails]
    assert mails[0]["To"] == "therapist@practice.test"
    assert mails[0]["Subject"] == "Newsletter: sending is stopped"
