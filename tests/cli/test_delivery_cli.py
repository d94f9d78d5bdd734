"""`newsletter send-test`: one real article to one address through the configured backend."""

from __future__ import annotations

import os
from email import policy
from email.parser import BytesParser

import pytest
from sendgrid_fake import API_KEY, FakeSendGrid
from typer.testing import CliRunner

from newsletter.cli import app
from newsletter.core.config import Settings, get_settings

runner = CliRunner()
SLUG = "myths-about-psychotherapy"


def test_send_test_writes_an_outbox_eml(settings: Settings) -> None:
    result = runner.invoke(app, ["send-test", SLUG, "2", "--to", "therapist@example.org"])
    assert result.exit_code == 0, result.output
    [name] = os.listdir(settings.outbox_dir)
    assert "therapist" not in name
    mail = BytesParser(policy=policy.default).parsebytes((settings.outbox_dir / name).read_bytes())
    assert mail["To"] == "therapist@example.org"
    assert mail["Subject"].startswith("[Test] ")
    assert mail["List-Unsubscribe"].startswith("<https://news.example.org/unsubscribe/")
    text = next(mail.iter_parts()).get_content()
    assert "%%NL_" not in text and "https://news.example.org/unsubscribe/" in text


def test_send_test_sandbox_through_sendgrid(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    with FakeSendGrid() as fake:
        monkeypatch.setenv("NEWSLETTER_MAIL_BACKEND", "sendgrid")
        monkeypatch.setenv("NEWSLETTER_SENDGRID_HOST", fake.url)
        monkeypatch.setenv("NEWSLETTER_SENDGRID_API_KEY", API_KEY)
        get_settings.cache_clear()
        result = runner.invoke(
            app, ["send-test", SLUG, "1", "--to", "therapist@example.org", "--sandbox"]
        )
    assert result.exit_code == 0, result.output
    assert "sandbox" in result.output
    [request] = fake.requests
    assert fake.problems == [] and request.status == 200
    body = request.body
    assert body["mail_settings"]["sandbox_mode"] == {"enable": True}
    [p] = body["personalizations"]
    assert p["to"] == [{"email": "therapist@example.org"}]
    assert "series" not in p["custom_args"]  # a test is not a ledger delivery
    assert p["headers"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_send_test_errors(settings: Settings) -> None:
    result = runner.invoke(app, ["send-test", "no-such-series", "1", "--to", "a@example.org"])
    assert result.exit_code == 1 and "no series" in result.output
    result = runner.invoke(app, ["send-test", SLUG, "99", "--to", "a@example.org"])
    assert result.exit_code == 1 and "not 99" in result.output
    result = runner.invoke(app, ["send-test", SLUG, "1", "--to", "a@b.org\nBcc: c@d.org"])
    assert result.exit_code == 1 and "one email address" in result.output
    assert not settings.outbox_dir.exists() or os.listdir(settings.outbox_dir) == []


def test_send_test_uses_the_part_stored_in_the_database(settings: Settings) -> None:
    from sqlalchemy import select

    from newsletter.content import series as content
    from newsletter.store import series as series_store
    from newsletter.store.db import session_scope
    from newsletter.store.models import Part, Series

    with session_scope(settings.database_url) as session:
        series_store.sync(session, content.load_all(settings.schedules_dir))
        series_id = session.scalar(select(Series.id).where(Series.slug == SLUG))
        part = session.scalar(select(Part).where(Part.series_id == series_id, Part.number == 1))
        assert part is not None
        part.title = "Edited in the database"
    result = runner.invoke(app, ["send-test", SLUG, "1", "--to", "therapist@example.org"])
    assert result.exit_code == 0, result.output
    [name] = os.listdir(settings.outbox_dir)
    mail = BytesParser(policy=policy.default).parsebytes((settings.outbox_dir / name).read_bytes())
    assert mail["Subject"] == "[Test] Edited in the database"
