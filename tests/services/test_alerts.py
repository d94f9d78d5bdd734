"""Alerts: a halt, a silent beat, no worker, a bad day: one email per problem and day, outbox."""

from __future__ import annotations

import pytest
import redis
from web_helpers import outbox

from newsletter.core.config import Settings
from newsletter.queue import liveness
from newsletter.queue.liveness import BEAT_SILENT_SECONDS
from newsletter.services import alerts
from newsletter.store.db import session_scope
from newsletter.store.halt import halt, resume

ADMIN = "therapist@practice.test"
NOON = 1_796_126_400.0  # 2026-12-01 12:00 UTC: 07:00 in New York
DAY = 86400.0


@pytest.fixture
def r(settings: Settings) -> redis.Redis:
    return redis.Redis.from_url(str(settings.redis_url), decode_responses=True)


@pytest.fixture
def admin(settings: Settings) -> Settings:
    return settings.model_copy(update={"admin_email": ADMIN, "alert_failures": 5})


def test_nothing_wrong_sends_nothing(admin: Settings, r: redis.Redis) -> None:
    liveness.record_tick(r, admin.redis_prefix, {}, at=NOON - 30)
    assert alerts.status(admin, r, NOON).problems == []
    assert alerts.watch(admin, r, NOON) == []
    assert outbox(admin) == []


def test_a_silent_beat_is_emailed_once_a_day(admin: Settings, r: redis.Redis) -> None:
    liveness.record_tick(r, admin.redis_prefix, {}, at=NOON - BEAT_SILENT_SECONDS - 60)
    assert alerts.watch(admin, r, NOON) == ["beat-silent"]
    assert alerts.watch(admin, r, NOON + 60) == []  # the same day: once
    assert alerts.watch(admin, r, NOON + 3600) == []
    mails = outbox(admin)
    assert len(mails) == 1 and mails[0].to == ADMIN
    assert mails[0].subject == "Newsletter: the scheduler (beat) has stopped"
    assert "No tick for 4 min" in mails[0].text and "newsletter beat" in mails[0].text
    assert f"{admin.public_url}/admin" in mails[0].text
    assert "List-Unsubscribe" not in mails[0].headers
    assert alerts.watch(admin, r, NOON + DAY) == ["beat-silent"]  # still silent the next day
    assert len(outbox(admin)) == 2


def test_a_halt_and_a_missing_worker_are_two_problems(admin: Settings, r: redis.Redis) -> None:
    liveness.record_tick(r, admin.redis_prefix, {}, at=NOON - 10)
    r.zadd(f"{admin.redis_prefix}leases", {"3": NOON + 600})
    with session_scope(admin.database_url) as session:
        halt(session, "provider answered 401")
    status = alerts.status(admin, r, NOON)
    assert [p.key for p in status.problems] == ["halted", "workers-missing"]
    assert not status.can_send
    assert sorted(alerts.watch(admin, r, NOON)) == ["halted", "workers-missing"]
    subjects = sorted(m.subject for m in outbox(admin))
    assert subjects == ["Newsletter: no worker is running", "Newsletter: sending is stopped"]
    with session_scope(admin.database_url) as session:
        resume(session)
    assert [p.key for p in alerts.status(admin, r, NOON).problems] == ["workers-missing"]


def test_failures_past_the_threshold_in_a_day(admin: Settings, r: redis.Redis) -> None:
    liveness.record_tick(r, admin.redis_prefix, {}, at=NOON)
    assert alerts.count_failures(admin, r, 3, NOON) == 3
    assert alerts.watch(admin, r, NOON) == []
    assert alerts.count_failures(admin, r, 2, NOON + 60) == 5
    status = alerts.status(admin, r, NOON + 60)
    assert [p.key for p in status.problems] == ["failures"] and status.can_send
    assert alerts.watch(admin, r, NOON + 60) == ["failures"]
    assert "5 deliveries failed today" in outbox(admin)[0].text
    # The practice's next day (New York) starts the count again.
    assert alerts.failures_today(admin, r, NOON + DAY) == 0
    assert alerts.today(admin, NOON) == "2026-12-01"
    assert alerts.today(admin, NOON - 8 * 3600) == "2026-11-30"  # 23:00 the evening before


def test_no_admin_address_no_email_but_still_a_problem(settings: Settings, r: redis.Redis) -> None:
    liveness.record_tick(r, settings.redis_prefix, {}, at=NOON - 1000)
    assert alerts.watch(settings, r, NOON) == []
    assert [p.key for p in alerts.status(settings, r, NOON).problems] == ["beat-silent"]
    assert outbox(settings) == []


def test_an_alert_that_could_not_go_out_is_tried_again_later(
    admin: Settings, r: redis.Redis
) -> None:
    broken = admin.model_copy(update={"mail_backend": "smtp", "smtp_url": None})
    liveness.record_tick(r, admin.redis_prefix, {}, at=NOON - 1000)
    assert alerts.watch(broken, r, NOON) == []  # the SMTP backend is not configured
    key = f"{admin.redis_prefix}alerted:beat-silent:2026-12-01"
    assert 0 < r.ttl(key) <= alerts.RETRY_SECONDS  # not the whole day: tried again in an hour
    r.delete(key)  # an hour later
    assert alerts.watch(admin, r, NOON + 3600) == ["beat-silent"]
