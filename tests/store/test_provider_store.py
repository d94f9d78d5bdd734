"""The mail provider's saved rows: secrets sealed, opened only with the secret key, laid under the environment."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.engine import make_url

from newsletter.core import sealing
from newsletter.core.config import Settings
from newsletter.store import backup, practice, provider
from newsletter.store.db import session_scope
from newsletter.store.models import PracticeSetting

KEY = "SG.mail24-secret-part.0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJK"
SMTP = "smtp://mailer:pa55-word-in-the-url@smtp.example.net:587"
PUBLIC = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE-public"


def _connect(settings: Settings) -> None:
    values = {
        "mail_backend": "sendgrid",
        "sendgrid_api_key": KEY,
        "sendgrid_webhook_public_key": PUBLIC,
        "smtp_url": SMTP,
        "provider_webhook_id": "hook-1",
    }
    with session_scope(settings.database_url) as db:
        provider.replace(db, values, settings.secret)
    practice.forget()


def _stored(settings: Settings) -> dict[str, str]:
    with session_scope(settings.database_url) as db:
        rows = db.execute(select(PracticeSetting.key, PracticeSetting.value)).all()
    return {k: v for k, v in rows}


def test_the_stored_sendgrid_key_is_not_readable_in_the_database_or_a_backup_without_the_secret_key(
    settings: Settings, tmp_path: Path
) -> None:
    _connect(settings)
    rows = _stored(settings)
    assert sealing.is_sealed(rows["sendgrid_api_key"]) and sealing.is_sealed(rows["smtp_url"])
    everything = "\n".join(rows.values())
    for secret_part in ("mail24-secret-part", "pa55-word-in-the-url"):
        assert secret_part not in everything
    assert rows["sendgrid_webhook_public_key"] == PUBLIC  # a public key is kept as it is

    if make_url(settings.database_url).get_backend_name() == "sqlite":  # the file, byte for byte
        copy = tmp_path / "backups" / "newsletter.backup"
        backup.backup(settings.database_url, copy)
        database = Path(str(make_url(settings.database_url).database))
        live = b"".join(  # the database file and its write-ahead log, where fresh rows are
            p.read_bytes() for p in (database, Path(f"{database}-wal")) if p.exists()
        )
        for raw in (copy.read_bytes(), live):
            assert b"mail24-secret-part" not in raw and b"pa55-word" not in raw
            assert rows["sendgrid_api_key"].encode() in raw  # the sealed row is there

    assert provider.opened(rows, "another-secret-key") == {}
    opened = provider.opened(rows, settings.secret)
    assert opened["sendgrid_api_key"] == KEY and opened["smtp_url"] == SMTP


def test_the_effective_settings_use_the_saved_provider_and_drop_it_under_another_secret(
    settings: Settings,
) -> None:
    _connect(settings)
    made = practice.effective_settings(settings)
    assert made.mail_backend == "sendgrid"
    assert made.sendgrid_api_key == SecretStr(KEY)
    assert KEY not in repr(made)  # a SecretStr: never in a log line
    assert made.sendgrid_webhook_public_key == PUBLIC and made.smtp_url == SMTP

    practice.forget()
    other = settings.model_copy(update={"secret_key": SecretStr("another-secret-key")})
    moved = practice.effective_settings(other)
    assert moved.mail_backend == "outbox" and moved.sendgrid_api_key is None  # test mode
    assert provider.unreadable(_stored(settings), "another-secret-key")


def test_a_provider_variable_in_the_environment_wins(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    _connect(settings)
    fixed = settings.model_copy(update={"mail_backend": "outbox"})
    made = practice.effective_settings(fixed)
    assert made.mail_backend == "outbox"
    assert made.sendgrid_api_key == SecretStr(KEY)  # the fields it leaves unset still come
    assert provider.fixed_by_environment(fixed) == ["NEWSLETTER_MAIL_BACKEND"]


def test_replacing_with_nothing_removes_every_provider_row_and_no_practice_row(
    settings: Settings,
) -> None:
    with session_scope(settings.database_url) as db:
        practice.save(db, {"practice_name": "Riverside Counselling"})
    _connect(settings)
    with session_scope(settings.database_url) as db:
        provider.replace(db, {}, settings.secret)
    assert _stored(settings) == {"practice_name": "Riverside Counselling"}
    with session_scope(settings.database_url) as db, pytest.raises(ValueError):
        provider.replace(db, {"practice_name": "x"}, settings.secret)
