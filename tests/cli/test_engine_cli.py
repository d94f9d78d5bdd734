"""Engine CLI: init queues the shipped series, subscribers add, series queue, tick --json, queue."""

from __future__ import annotations

import datetime as dt
import json

from engine_support import enrollments, outbox_mails
from sqlalchemy import select
from typer.testing import CliRunner

from newsletter.cli import app
from newsletter.core.config import Settings
from newsletter.store.db import session_scope
from newsletter.store.models import ACTIVE, DRAFT, LIVE, PENDING, Series, Subscriber

runner = CliRunner()


def ok(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def test_init_queues_shipped_series_once_in_order(settings: Settings) -> None:
    ok("init")
    with session_scope(settings.database_url) as session:
        rows = list(session.scalars(select(Series).order_by(Series.queued_at, Series.id)))
        assert [(s.slug, s.state) for s in rows] == [
            ("myths-about-psychotherapy", LIVE),
            ("co-created-process", LIVE),
        ]
        rows[1].state = DRAFT  # a later init must not queue anything again
    ok("init")
    with session_scope(settings.database_url) as session:
        assert (
            session.scalar(select(Series.state).where(Series.slug == "co-created-process")) == DRAFT
        )


def test_subscribers_add_confirmed_then_tick_sends_at_first_slot(settings: Settings) -> None:
    ok("init")
    out = ok(
        "subscribers",
        "add",
        "Reader@Example.org",
        "--name",
        "Reader",
        "--tz",
        "Asia/Kolkata",
        "--confirmed",
    )
    assert "Asia/Kolkata" in out and "@" not in out.split("first article")[1]
    with session_scope(settings.database_url) as session:
        sub = session.scalar(select(Subscriber))
        assert sub is not None and sub.status == ACTIVE and sub.consent_method == "cli-consented"
        sid = sub.id
    due = enrollments(settings, sid)[0].next_due_at
    assert due is not None
    before = json.loads(ok("tick", "--now", (due - dt.timedelta(seconds=1)).isoformat(), "--json"))
    assert before == {"due": 0, "sent": 0, "retry": 0, "skipped": 0, "failed": 0}
    at = json.loads(ok("tick", "--now", due.isoformat(), "--json"))
    assert at == {"due": 1, "sent": 1, "retry": 0, "skipped": 0, "failed": 0}
    assert len(outbox_mails(settings)) == 1
    result = runner.invoke(app, ["subscribers", "add", "reader@example.org", "--confirmed"])
    assert result.exit_code == 1 and "already" in result.output


def test_subscribers_add_pending_sends_the_confirmation(settings: Settings) -> None:
    ok("init")
    ok("subscribers", "add", "new@example.org")
    with session_scope(settings.database_url) as session:
        sub = session.scalar(select(Subscriber))
        assert sub is not None and sub.status == PENDING
    assert len(outbox_mails(settings)) == 1
    assert enrollments(settings, sub.id) == []


def test_bad_input_is_refused_clearly(settings: Settings) -> None:
    ok("init")
    for args, words in [
        (["subscribers", "add", "not-an-address"], "valid"),
        (["subscribers", "add", "a@example.org", "--tz", "Mars/Base"], "time zone"),
        (["series", "queue", "nope"], "no series"),
        (["series", "queue", "myths-about-psychotherapy", "--start", "March"], "date"),
        (["series", "queue", "myths-about-psychotherapy", "--start", "9999-12-31"], "ten years"),
        (["reconcile", "--now", "soon"], "ISO"),
        (["tick", "--now", "yesterday"], "ISO"),
    ]:
        result = runner.invoke(app, args)
        assert result.exit_code != 0 and words in result.output, (args, result.output)


def test_queue_status_and_rebuild(settings: Settings) -> None:
    ok("init")
    ok("subscribers", "add", "a@example.org", "--confirmed")
    assert "rebuilt" in ok("queue", "rebuild")
    status = json.loads(ok("queue", "status", "--json"))
    assert status["next_7d"] == 1 and status["built"] is True


def test_queue_status_says_when_sending_is_stopped(settings: Settings) -> None:
    from newsletter.store import halt as delivery

    ok("init")
    ok("queue", "rebuild")
    assert json.loads(ok("queue", "status", "--json"))["halted"] is None
    with session_scope(settings.database_url) as session:
        delivery.halt(session, "SendGrid refused the API key (401)")
    assert json.loads(ok("queue", "status", "--json"))["halted"] == (
        "SendGrid refused the API key (401)"
    )
    result = CliRunner().invoke(app, ["queue", "status"])
    assert result.exit_code == 0
    assert "sending is stopped" in result.output and "401" in result.output
