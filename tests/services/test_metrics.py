"""/metrics after a small send through the task wrappers (inline), webhook events, worker files."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from collections.abc import Iterator

import pytest
from engine_support import add_person, outbox_mails, ship
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr
from sqlalchemy import update

from newsletter.core.config import Settings, get_settings
from newsletter.queue import liveness
from newsletter.queue.dueset import RedisQueue
from newsletter.services import metrics
from newsletter.store.db import session_scope
from newsletter.store.models import ENROLLED_ACTIVE, Enrollment
from newsletter.web.app import create_app

TOKEN = "metrics-test-token"


def scrape(c: TestClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = c.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200, response.text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture
def web(settings: Settings) -> Iterator[TestClient]:
    app = create_app(
        settings.model_copy(
            update={"metrics_token": SecretStr(TOKEN), "webhook_allow_unsigned": True}
        )
    )
    with TestClient(app, base_url="https://news.example.org") as c:
        yield c


@pytest.fixture
def eager(settings: Settings) -> Iterator[object]:
    """The Celery tasks run inline: tick's fan-out calls send_chunk in this process."""
    from newsletter import tasks  # imported after the settings are exported

    get_settings.cache_clear()
    tasks.app.conf.task_always_eager = True
    try:
        yield tasks
    finally:
        tasks.app.conf.task_always_eager = False


def test_a_small_send_shows_in_the_metrics(settings: Settings, web: TestClient, eager) -> None:
    # The queue gauges read Redis's clock (as beat does): "now" is Redis's here too.
    now = dt.datetime.fromtimestamp(liveness.redis_now(RedisQueue(settings).redis), dt.UTC)
    ship(settings, now - dt.timedelta(days=10))
    for _ in range(3):
        add_person(settings, now - dt.timedelta(days=10), "UTC")
    with session_scope(settings.database_url) as session:
        session.execute(
            update(Enrollment)
            .where(Enrollment.state == ENROLLED_ACTIVE)
            .values(next_due_at=now - dt.timedelta(minutes=5))
        )
        RedisQueue(settings).rebuild(session)
    before = scrape(web)
    assert value(before, "newsletter_due_now") == 3
    assert value(before, "newsletter_oldest_due_age_seconds") > 0

    result = eager.tick(now=now.isoformat())
    assert result == {"due": 3, "chunks": 1}
    assert len(outbox_mails(settings)) == 3

    after = scrape(web)
    assert (
        value(after, "newsletter_sends_total", outcome="sent")
        - value(before, "newsletter_sends_total", outcome="sent")
        == 3
    )
    assert value(after, "newsletter_sends_total", outcome="failed") == value(
        before, "newsletter_sends_total", outcome="failed"
    )
    chunks = "newsletter_send_chunk_seconds_count"
    assert value(after, chunks, backend="outbox") - value(before, chunks, backend="outbox") == 1
    ticks = "newsletter_tick_seconds_count"
    assert value(after, ticks, source="manual") - value(before, ticks, source="manual") == 1
    due = "newsletter_tick_due_total"
    assert value(after, due, source="manual") - value(before, due, source="manual") == 3
    assert value(after, "newsletter_due_now") == 0 and value(after, "newsletter_leased") == 0
    assert value(after, "newsletter_due_set_size") == 3  # each reader's part 2, next week
    assert value(after, "newsletter_beat_age_seconds") < 60  # the tick was recorded


def test_webhook_events_are_counted_by_type(web: TestClient) -> None:
    before = scrape(web)
    batch = [
        {"event": "delivered", "email": "x@example.org", "sg_event_id": "a1", "timestamp": 1},
        {"event": "delivered", "email": "y@example.org", "sg_event_id": "a2", "timestamp": 1},
        {"event": "bounce", "email": "z@example.org", "sg_event_id": "a3", "timestamp": 1},
        {"event": "made-up-type", "sg_event_id": "a4", "timestamp": 1},
        "not an event",
    ]
    response = web.post("/webhooks/sendgrid", content=json.dumps(batch))
    assert response.status_code == 200
    after = scrape(web)
    name = "newsletter_webhook_events_total"
    for kind, n in (("delivered", 2), ("bounce", 1), ("other", 2)):
        assert value(after, name, type=kind) - value(before, name, type=kind) == n
    assert not any("made-up-type" in str(key) for key in after)


WORKER = """
import sys
from newsletter.core.config import load_settings
from newsletter.services import metrics
metrics.use_directory(load_settings())
metrics.chunk_sent({"sent": 7, "retry": 2, "failed": 1}, 0.3, "outbox")
"""


@pytest.mark.slow  # a worker in a child process
def test_worker_processes_values_add_up_with_this_process(
    settings: Settings, web: TestClient
) -> None:
    """Two processes write multi-process files (as a Celery pool does); /metrics sums them."""
    before = scrape(web)
    for _ in range(2):
        subprocess.run([sys.executable, "-c", WORKER], check=True, timeout=120)
    assert len(list((settings.var_dir / "metrics").glob("*.db"))) >= 2
    metrics.chunk_sent({"sent": 1}, 0.1, "outbox")  # this (web) process's own value
    after = scrape(web)
    sent = "newsletter_sends_total"
    assert value(after, sent, outcome="sent") - value(before, sent, outcome="sent") == 15
    assert (
        value(after, "newsletter_retries_total", kind="send")
        - value(before, "newsletter_retries_total", kind="send")
        == 4
    )
    bucket = "newsletter_send_chunk_seconds_bucket"
    assert (
        value(after, bucket, backend="outbox", le="0.5")
        - value(before, bucket, backend="outbox", le="0.5")
        == 3
    )


def test_reconcile_reports_count_as_retries_by_kind(web: TestClient) -> None:
    before = scrape(web)
    metrics.reconciled({"requeued": 2, "confirmed_sent": 1, "resent": 1, "poisoned": 0})
    after = scrape(web)
    for name, labels, n in (
        ("newsletter_retries_total", {"kind": "requeued"}, 2),
        ("newsletter_retries_total", {"kind": "resent"}, 1),
        ("newsletter_reconciled_total", {"result": "confirmed_sent"}, 1),
        ("newsletter_reconciled_total", {"result": "poisoned"}, 0),
    ):
        assert value(after, name, **labels) - value(before, name, **labels) == n
    assert value(after, "newsletter_retries_total", kind="confirmed_sent") == 0
