"""Logs: readable or JSON lines, with tick/chunk ids, and never an address, a name or a link token."""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
import re
from collections.abc import Iterator

import pytest
from sqlalchemy import select, update
from web_helpers import LINK_RE, client, csrf, outbox

from newsletter.core import tokens
from newsletter.core.config import Settings, get_settings
from newsletter.queue import liveness
from newsletter.queue.dueset import RedisQueue
from newsletter.services import logs
from newsletter.store.db import session_scope
from newsletter.store.models import ENROLLED_ACTIVE, Enrollment, Subscriber

SECRET = "test-secret-key-not-for-production"


@pytest.fixture
def captured() -> Iterator[tuple[io.StringIO, logging.Handler]]:
    """Our handler, in the format the test chooses, into a buffer; the old one back after."""
    root = logging.getLogger()
    saved = (root.level, list(root.handlers))
    buffer = io.StringIO()
    yield buffer, logs.configure("text", stream=buffer)
    for handler in list(root.handlers):
        if isinstance(handler, logs.NewsletterHandler):
            root.removeHandler(handler)
    for handler in saved[1]:
        if handler not in root.handlers:
            root.addHandler(handler)
    root.setLevel(saved[0])


def test_scrub_removes_addresses_link_tokens_and_bare_tokens() -> None:
    compact = tokens.make_token(SECRET, "preferences", "a1b2c3d4e5f6a7b8")
    timed = tokens.make_token(SECRET, "confirm", "a1b2c3d4e5f6a7b8")
    line = (
        f"550 <ana.lopez@example.org> unknown; POST /confirm/{timed} 200; "
        f"GET https://x.test/unsubscribe/{compact}?a=1; token {compact} and {timed}"
    )
    clean = logs.scrub(line)
    assert "example.org" not in clean and compact not in clean and timed not in clean
    assert "<address>" in clean and "/confirm/…" in clean and "/unsubscribe/…?a=1" in clean
    # what is not personal stays readable
    assert logs.scrub("tick done: {'due': 3} newsletter.send_chunk") == (
        "tick done: {'due': 3} newsletter.send_chunk"
    )


def test_the_access_log_keeps_no_client_address(captured) -> None:
    buffer, _ = captured
    access = logging.getLogger("uvicorn.access")
    # uvicorn's own call: '%s - "%s %s HTTP/%s" %d' with (client, method, path, version, status)
    access.info('%s - "%s %s HTTP/%s" %d', "203.0.113.9:51234", "GET", "/archive", "1.1", 200)
    line = buffer.getvalue()
    assert '- - "GET /archive HTTP/1.1" 200' in line and "203.0.113.9" not in line


def test_json_lines_carry_the_ids_and_no_address(captured) -> None:
    buffer, handler = captured
    handler.setFormatter(logs.JsonFormatter())
    log = logging.getLogger("newsletter.test")
    with logs.context(chunk_id="c-1", series_id=2, part=3, deliveries=1000):
        log.warning("refused %s", "bo@example.org")
        try:
            raise ValueError("bad address lee@example.net")
        except ValueError:
            log.exception("failed")
    log.info("outside")
    lines = [json.loads(line) for line in buffer.getvalue().splitlines()]
    assert [line["message"] for line in lines] == ["refused <address>", "failed", "outside"]
    assert lines[0]["chunk_id"] == "c-1" and lines[0]["series_id"] == 2 and lines[0]["part"] == 3
    assert lines[0]["level"] == "WARNING" and lines[0]["logger"] == "newsletter.test"
    assert dt.datetime.fromisoformat(lines[0]["time"]).tzinfo is not None
    assert "ValueError: bad address <address>" in lines[1]["exception"]
    assert "chunk_id" not in lines[2]
    assert "example." not in buffer.getvalue()


def test_text_lines_end_with_the_ids(captured) -> None:
    buffer, _ = captured
    with logs.context(tick_id="t-9"):
        logging.getLogger("newsletter.test").info("tick done")
    assert re.search(r"INFO newsletter\.test: tick done \[tick_id=t-9\]$", buffer.getvalue())


def test_the_setting_picks_the_format(settings: Settings, monkeypatch, captured) -> None:
    monkeypatch.setenv("NEWSLETTER_LOG_FORMAT", "json")
    get_settings.cache_clear()
    assert get_settings().log_format == "json"
    handler = logs.configure(get_settings().log_format, stream=captured[0])
    assert isinstance(handler.formatter, logs.JsonFormatter)
    assert sum(isinstance(h, logs.NewsletterHandler) for h in logging.getLogger().handlers) == 1


NAME = "Quillon Fairweather"
ADDRESS = "quillon.fairweather@example.org"


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_a_whole_run_logs_no_address_name_or_token(settings: Settings, fmt: str, captured) -> None:
    """signup → confirm → tick → send (the task wrappers, inline) → a provider event; then every
    line logged, at every level, is searched for the reader's address, name and link tokens."""
    from newsletter import tasks

    buffer, _ = captured
    tasks.app.conf.task_always_eager = True
    try:
        web_settings = settings.model_copy(update={"webhook_allow_unsigned": True})
        with client(web_settings) as c:
            # after create_app, which installs the handler for NEWSLETTER_LOG_FORMAT
            logs.configure(fmt, stream=buffer, level=logging.DEBUG)
            logging.getLogger().setLevel(logging.DEBUG)
            from newsletter.content import series as content
            from newsletter.store import series as series_store

            with session_scope(settings.database_url) as s:
                series_store.sync(s, content.load_all(settings.schedules_dir))
            from engine_support import ship

            now = dt.datetime.fromtimestamp(liveness.redis_now(RedisQueue(settings).redis), dt.UTC)
            ship(settings, now - dt.timedelta(days=1))
            response = c.post(
                "/subscribe",
                data={
                    "csrf_token": csrf(c),
                    "email": ADDRESS,
                    "name": NAME,
                    "timezone": "Europe/London",
                    "series": ["myths-about-psychotherapy"],
                },
            )
            assert response.status_code == 200, response.text[:300]
            confirm = outbox(settings)[-1].link("confirm")
            assert c.post(confirm, data={"csrf_token": csrf(c, confirm)}).status_code == 200
            with session_scope(settings.database_url) as s:
                sub = s.scalar(select(Subscriber).where(Subscriber.email_key == ADDRESS))
                s.execute(
                    update(Enrollment)
                    .where(Enrollment.subscriber_id == sub.id, Enrollment.state == ENROLLED_ACTIVE)
                    .values(next_due_at=now - dt.timedelta(minutes=1))
                )
                RedisQueue(settings).rebuild(s)
            assert tasks.tick.delay(now=now.isoformat()).get()["due"] == 1  # inline, with an id
            article = outbox(settings)[-1]
            assert "Myth" in article.subject
            links = {m.group(2) for mail in outbox(settings) for m in LINK_RE.finditer(mail.text)}
            assert len(links) >= 3  # confirm, preferences, unsubscribe
            # the pages the links open, and a provider event about the reader
            for purpose in ("preferences", "unsubscribe"):
                assert c.get(article.link(purpose)).status_code == 200
            event = {"event": "delivered", "email": ADDRESS, "timestamp": 1, "sg_event_id": "e1"}
            assert c.post("/webhooks/sendgrid", content=json.dumps([event])).status_code == 200
    finally:
        tasks.app.conf.task_always_eager = False

    output = buffer.getvalue()
    assert "chunk done" in output and "tick done" in output  # the run was logged
    if fmt == "json":
        lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
        assert len(lines) == len([line for line in output.splitlines() if line.strip()])
        assert any(line.get("chunk_id") and line.get("series_id") for line in lines)
        assert any("tick_id" in line for line in lines)
    else:
        assert re.search(
            r"chunk done: .*\[(tick_id=\S+ )?chunk_id=\S+ series_id=\d+ part=1 deliveries=1\]",
            output,
        )
    lowered = output.lower()
    assert ADDRESS not in lowered and "quillon" not in lowered and "fairweather" not in lowered
    for token in links:
        assert token not in output, f"a link token reached the logs: {token[:8]}…"
