"""`newsletter init`: the webhook key hint, and erased addresses re-keyed after upgrading."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from paths import ROOT
from sqlalchemy import select
from typer.testing import CliRunner

from newsletter.cli import app
from newsletter.cli.setup import WEBHOOK_KEY_HINT
from newsletter.core import identity
from newsletter.core.config import Settings, get_settings
from newsletter.store.db import session_scope, upgrade
from newsletter.store.models import Suppression

runner = CliRunner()


def init() -> str:
    get_settings.cache_clear()
    result = runner.invoke(app, ["init"])
    assert result.exit_code == 0, result.output
    return result.output


def test_init_says_how_to_set_the_webhook_key_for_sendgrid(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert "WEBHOOK_PUBLIC_KEY" not in init()  # the outbox needs no webhook
    monkeypatch.setenv("NEWSLETTER_MAIL_BACKEND", "sendgrid")
    monkeypatch.setenv("NEWSLETTER_SENDGRID_API_KEY", "SG.test-key-not-real")
    hints = [line for line in init().splitlines() if "WEBHOOK_PUBLIC_KEY" in line]
    assert hints == [WEBHOOK_KEY_HINT]  # one line, naming the variable
    assert "NEWSLETTER_SENDGRID_WEBHOOK_PUBLIC_KEY" in WEBHOOK_KEY_HINT
    monkeypatch.setenv("NEWSLETTER_SENDGRID_WEBHOOK_PUBLIC_KEY", "MFkwEwYHKoZIzj0CAQYIKoZIzj0D")
    assert "WEBHOOK_PUBLIC_KEY" not in init()  # set: nothing to say


def test_init_rekeys_erased_addresses_stored_as_plain_sha256(settings: Settings) -> None:
    upgrade(settings.database_url)
    with session_scope(settings.database_url) as session:
        plain = identity.email_hash("gone@example.org")
        session.add(Suppression(email_hash=plain, reason="erased", keyed=False))
    assert "re-keyed with the secret key: 1" in init()
    with session_scope(settings.database_url) as session:
        row = session.scalar(select(Suppression))
        assert row is not None and row.keyed
        assert row.email_hash == identity.suppression_key(settings.secret, "gone@example.org")
    assert "re-keyed" not in init()  # nothing left to do


def test_init_queues_the_shipped_series_on_a_fresh_database_then_syncs_appended_parts(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """init goes through services.series_admin (the admin's reload): a fresh database gets the
    series queued by `order`; a later init syncs a part appended to a series, queuing nothing."""
    schedules = tmp_path / "schedules"
    shutil.copytree(ROOT / "schedules", schedules)
    monkeypatch.setenv("NEWSLETTER_SCHEDULES_DIR", str(schedules))
    queued = [line for line in init().splitlines() if line.startswith("queued ")]
    assert queued == [
        "queued myths-about-psychotherapy (order 1)",
        "queued co-created-process (order 2)",
    ]
    folder = schedules / "co-created-process"
    (folder / "03-after-the-work.md").write_text(
        "---\ntitle: After the work\nsummary: What stays with you.\n---\nA third part.\n"
    )
    yaml_file = folder / "series.yaml"
    yaml_file.write_text(yaml_file.read_text() + "  - 03-after-the-work.md\n")
    again = init()
    assert "queued " not in again
    assert "1 parts appended" in again


def test_init_prints_a_setup_link_until_the_owner_exists(settings: Settings) -> None:
    """`init` (and so `make run`) prints a fresh one-time link; `admin setup-link` prints
    another (the first stops working); once the owner exists neither prints one."""
    from newsletter.services import accounts, accounts_links

    first = [w for w in init().split() if "/admin/setup/" in w]
    assert len(first) == 1 and first[0].startswith(settings.public_url)
    again = runner.invoke(app, ["admin", "setup-link"])
    assert again.exit_code == 0, again.output
    [second] = [w for w in again.output.split() if "/admin/setup/" in w]
    token = second.rsplit("/", 1)[1]
    with session_scope(settings.database_url) as session:
        assert accounts_links.setup_state(session, first[0].rsplit("/", 1)[1]) == "invalid"
        assert accounts_links.setup_state(session, token) == "fine"
        accounts.create(session, "maya@harbour.example", "Maya", accounts.OWNER, "argon2-hash")
    assert "/admin/setup/" not in init()
    refused = runner.invoke(app, ["admin", "setup-link"])
    assert refused.exit_code != 0 and "sign in" in refused.output
