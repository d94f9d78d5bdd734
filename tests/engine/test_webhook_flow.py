"""engine.webhook_flow: whether SendGrid's signed events are flowing, as `doctor` and the
dashboard say it (every state, on each database; the clock is the test's)."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from sendgrid_events import EventPoster
from sendgrid_fake import FakeSendGrid
from test_absence import _at, _due, _failing_first, flow  # noqa: F401  (flow: the fixture)
from time_machine import TimeMachineFixture

from newsletter.core.config import Settings, load_settings
from newsletter.engine.tick import tick
from newsletter.engine.webhook_flow import (
    FLOWING,
    IDLE,
    NOT_CONFIGURED,
    NOT_SENDGRID,
    QUIET_AFTER,
    REFUSED,
    SILENT,
    Flow,
    webhook_flow,
)
from newsletter.services.doctor import CHECKS, Context
from newsletter.store.db import session_scope
from newsletter.web.words import banned_in

Flowing = tuple[Settings, FakeSendGrid, EventPoster]


def _flow(settings: Settings, now: dt.datetime) -> Flow:
    with session_scope(settings.database_url) as session:
        return webhook_flow(settings, session, now)


def _doctor(settings: Settings) -> tuple[str, str]:
    [finding] = CHECKS["webhook-events"](Context(settings))
    return finding.level, finding.message


def _dashboard(settings: Settings) -> str:
    from web_helpers import as_admin, signed_in

    client, _ = signed_in(as_admin(settings))
    page = client.get("/admin").text
    assert banned_in(re.sub(r"<[^>]*>", " ", page)) == []  # her words only (text, not links)
    return " ".join(page.split())


def test_the_quiet_time_is_the_default_settle_window_not_the_setting() -> None:
    assert dt.timedelta(minutes=15) == QUIET_AFTER
    assert dt.timedelta(minutes=Settings().settle_window_minutes) == QUIET_AFTER


def test_not_sendgrid_and_not_configured(settings: Settings) -> None:
    now = dt.datetime(2027, 3, 1, 9, tzinfo=dt.UTC)
    assert _flow(settings, now).state == NOT_SENDGRID  # the outbox
    assert _doctor(settings)[0] == "ok"
    assert "reports back" not in _dashboard(settings)
    bare = load_settings(mail_backend="sendgrid", sendgrid_webhook_public_key="")
    assert _flow(bare, now) == Flow(NOT_CONFIGURED)
    level, message = _doctor(bare)
    assert level == "warning" and "waits 24 hours" in message
    assert "SendGrid doesn't report back yet" in _dashboard(bare)


def test_idle_then_silent_then_flowing(flow: Flowing, time_machine: TimeMachineFixture) -> None:  # noqa: F811
    settings, _, poster = flow
    due = _due(settings, time_machine)
    assert _flow(settings, due).state == IDLE  # nothing handed yet
    assert tick(settings, due).sent == 6
    assert _flow(settings, due + QUIET_AFTER - dt.timedelta(seconds=1)).state == IDLE  # too soon
    quiet = _at(time_machine, due, 16)
    assert _flow(settings, quiet) == Flow(SILENT, due, None)
    level, message = _doctor(settings)
    assert level == "warning" and "no SendGrid event has come" in message
    assert "SendGrid's reports have stopped coming" in _dashboard(settings)
    assert poster.flush() == 6
    answered = _flow(settings, _at(time_machine, due, 17))
    assert answered.state == FLOWING and answered.last_answered is not None
    assert answered.last_answered >= quiet
    assert _doctor(settings)[0] == "ok"
    assert "SendGrid's reports" not in _dashboard(settings)
    # a day without mail: nothing to judge
    assert _flow(settings, due + dt.timedelta(days=2)).state == IDLE


def test_posts_that_are_all_refused_are_no_flow(
    flow: Flowing,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    time_machine: TimeMachineFixture,
) -> None:
    settings, _, poster = flow
    due = _due(settings, time_machine)
    assert tick(settings, due).sent == 6
    _failing_first(monkeypatch)
    _at(time_machine, due, 16)
    assert poster.flush() == 0 and poster.answers == [500]
    assert _flow(settings, _at(time_machine, due, 17)) == Flow(REFUSED, due, None)
    level, message = _doctor(settings)
    assert level == "error" and "every post was refused" in message
    assert "SendGrid's reports are being turned away" in _dashboard(settings)
    assert poster.flush() == 6  # the retry is answered: flowing again
    assert _flow(settings, _at(time_machine, due, 18)).state == FLOWING
