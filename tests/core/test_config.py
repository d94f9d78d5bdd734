"""Settings: defaults, and bad values give one clear line naming the variable."""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from control_chars import CONTROL_CHARACTERS, NOT_IN_TEXT, name
from typer.testing import CliRunner

from newsletter.core.config import ENV_PREFIX, ConfigError, get_settings, load_settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No NEWSLETTER_* variables from the outside world."""
    for key in list(os.environ):
        if key.startswith(ENV_PREFIX):
            monkeypatch.delenv(key)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_defaults() -> None:
    s = load_settings()
    assert s.database_url == "sqlite:///var/newsletter.db"
    assert s.redis_url is None  # embedded Redis
    assert s.mail_backend == "outbox"
    assert s.outbox_dir == Path("var/outbox")
    assert s.sendgrid_host == "https://api.sendgrid.com"
    assert s.public_url == "http://127.0.0.1:8000"
    assert s.default_timezone == "America/New_York"
    assert s.tracking == "off"
    assert s.from_email.endswith("@example.com") and s.reply_to.endswith("@example.com")
    assert s.postal_address and s.from_name
    assert s.schedules_dir == Path("schedules") and s.templates_dir == Path("templates")
    assert s.batch_size == 1000
    assert s.admin_password is None and s.sendgrid_api_key is None


def test_environment_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEWSLETTER_DEFAULT_TIMEZONE", "Europe/London")
    monkeypatch.setenv("NEWSLETTER_PUBLIC_URL", "https://news.example.org/")
    monkeypatch.setenv("NEWSLETTER_MAIL_BACKEND", "sendgrid")
    monkeypatch.setenv("NEWSLETTER_SENDGRID_API_KEY", "SG.secret")
    monkeypatch.setenv("NEWSLETTER_REDIS_URL", "")
    s = load_settings()
    assert s.default_timezone == "Europe/London"
    assert s.public_url == "https://news.example.org"  # trailing slash dropped
    assert s.mail_backend == "sendgrid"
    assert s.sendgrid_api_key is not None and s.sendgrid_api_key.get_secret_value() == "SG.secret"
    assert "SG.secret" not in repr(s)  # secrets don't leak into logs
    assert s.redis_url is None


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("DEFAULT_TIMEZONE", "Mars/Olympus_Mons", "unknown time zone 'Mars/Olympus_Mons'"),
        ("PUBLIC_URL", "news.example.org", "expected a https/http URL"),
        ("PUBLIC_URL", "ftp://news.example.org", "expected a https/http URL"),
        ("SENDGRID_HOST", "api.sendgrid.com", "expected a https/http URL"),
        ("SMTP_URL", "mail.example.org:25", "expected a smtp/smtps URL"),
        ("REDIS_URL", "localhost:6379", "expected a redis/rediss/unix URL"),
        ("DATABASE_URL", "mysql://db/newsletter", "expected sqlite:///path or postgresql"),
        ("MAIL_BACKEND", "mailgun", "'outbox', 'sendgrid' or 'smtp'"),
        ("TRACKING", "everything", "'off', 'opens', 'clicks' or 'on'"),
        ("FROM_EMAIL", "not-an-email", "not an email address: 'not-an-email'"),
        ("REPLY_TO", "Anna <anna@example.org>", "not an email address"),
        ("FROM_NAME", "Two\nLines", "must be a single line"),
        ("BATCH_SIZE", "5000", "less than or equal to 1000"),
        ("BATCH_SIZE", "many", "valid integer"),
    ],
)
def test_bad_values_name_the_variable_on_one_line(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, expected: str
) -> None:
    monkeypatch.setenv(ENV_PREFIX + variable, value)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    message = str(caught.value)
    assert message.startswith(f"NEWSLETTER_{variable}: ")
    assert expected in message
    assert "\n" not in message


def test_several_bad_values_are_all_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEWSLETTER_DEFAULT_TIMEZONE", "Nowhere/Town")
    monkeypatch.setenv("NEWSLETTER_MAIL_BACKEND", "pigeon")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    message = str(caught.value)
    assert "NEWSLETTER_DEFAULT_TIMEZONE:" in message and "NEWSLETTER_MAIL_BACKEND:" in message
    assert "\n" not in message


def test_cli_exits_2_with_the_message(monkeypatch: pytest.MonkeyPatch) -> None:
    from newsletter.cli import app

    monkeypatch.setenv("NEWSLETTER_DEFAULT_TIMEZONE", "Mars/Olympus_Mons")
    result = CliRunner().invoke(app, ["series", "validate"])
    assert result.exit_code == 2
    assert "configuration error" in result.output
    assert "NEWSLETTER_DEFAULT_TIMEZONE: unknown time zone 'Mars/Olympus_Mons'" in result.output
    assert "Traceback" not in result.output


def test_secret_is_generated_once_and_private(tmp_path: Path) -> None:
    s = load_settings(var_dir=tmp_path / "var")
    first = s.secret
    assert len(first) >= 40
    path = tmp_path / "var" / "secret_key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_settings(var_dir=tmp_path / "var").secret == first
    assert load_settings(var_dir=tmp_path / "var", secret_key="given").secret == "given"


def test_get_settings_is_cached(monkeypatch: pytest.MonkeyPatch) -> None:
    assert get_settings() is get_settings()
    monkeypatch.setenv("NEWSLETTER_TRACKING", "clicks")
    assert get_settings().tracking == "off"  # read once per process…
    get_settings.cache_clear()
    assert get_settings().tracking == "clicks"  # …until the cache is cleared


# The practice's values as the environment gives them: the same rules as the Settings page.
PRACTICE_LINES = {
    "from_email": "news@calm.example.org",
    "reply_to": "hello@calm.example.org",
    "admin_email": "therapist@calm.example.org",
    "from_name": "Calm Practice",
    "practice_name": "Calm Practice",
    "postal_address": "4 Quiet Lane, Harbour Town",
    "signup_heading": "Letters from the practice",
    "care_note": "Not advice for you.",
    "reply_note": "Replies are read within two days.",
}


@pytest.mark.parametrize("char", CONTROL_CHARACTERS, ids=name)
@pytest.mark.parametrize("field", PRACTICE_LINES)
def test_a_control_character_in_a_practice_value_is_a_config_error(field: str, char: str) -> None:
    good = PRACTICE_LINES[field]
    with pytest.raises(ConfigError) as caught:
        load_settings(**{field: good[:4] + char + good[4:]})
    message = str(caught.value)
    assert message.startswith(f"NEWSLETTER_{field.upper()}: ") and name(char) in message
    assert "\n" not in message and load_settings(**{field: good})


@pytest.mark.parametrize("char", NOT_IN_TEXT, ids=name)
def test_the_signup_introduction_takes_line_breaks_only(char: str) -> None:
    assert load_settings(signup_intro="One.\n\n\tTwo.").signup_intro == "One.\n\n\tTwo."
    with pytest.raises(ConfigError, match=f"NEWSLETTER_SIGNUP_INTRO: .*{re.escape(name(char))}"):
        load_settings(signup_intro=f"One.{char}Two.")


def test_a_tab_in_the_sender_from_the_environment_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("NEWSLETTER_FROM_EMAIL", "news\t@calm.example.org")
    with pytest.raises(
        ConfigError, match=r"NEWSLETTER_FROM_EMAIL: .*control character \(U\+0009\)"
    ):
        load_settings()
