"""Settings: every NEWSLETTER_* environment variable, typed, with local defaults."""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, Self, cast
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, PrivateAttr, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from newsletter.core.private_files import create_private, tighten

ENV_PREFIX = "NEWSLETTER_"
CARE_NOTE = (
    "These articles are general information, not therapy or advice for your situation. "
    "If you are in crisis, call or text 988 in the US, or your local emergency number."
)


LINE_MAX = 2000  # characters of one practice text in the environment


class ConfigError(Exception):
    """A setting has a bad value; the message names the variable and fits on one line."""


def _check_url(value: str, schemes: tuple[str, ...]) -> str:
    parts = urlsplit(value)
    if parts.scheme not in schemes or not parts.netloc:
        raise ValueError(
            f"expected a {'/'.join(schemes)} URL like {schemes[0]}://host, got {value!r}"
        )
    return value.rstrip("/")


class Settings(BaseSettings):
    """The whole configuration. Read once per process with `get_settings()`."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore")
    _secret_read: tuple[Path, str] | None = PrivateAttr(default=None)  # (var_dir, key file's key)
    # Effective settings (with_saved) keep the settings they were made from: the environment's.
    _environment: Settings | None = PrivateAttr(default=None)

    database_url: str = "sqlite:///var/newsletter.db"
    redis_url: str | None = None
    mail_backend: Literal["outbox", "sendgrid", "smtp"] = "outbox"
    outbox_dir: Path = Path("var/outbox")
    sendgrid_api_key: SecretStr | None = None
    sendgrid_host: str = "https://api.sendgrid.com"
    sendgrid_webhook_public_key: str | None = None
    smtp_url: str | None = None
    public_url: str = "http://127.0.0.1:8000"
    secret_key: SecretStr | None = None
    from_email: str = "newsletter@example.com"
    from_name: str = "Example Therapy Practice"
    reply_to: str = "hello@example.com"
    postal_address: str = "100 Sample Street, Suite 2, Springfield, NY 10001, USA"
    admin_password: SecretStr | None = None
    default_timezone: str = "America/New_York"
    tracking: Literal["off", "opens", "clicks", "on"] = "off"
    # The reply-to line: whether replies are read, by whom and how quickly.
    reply_note: str = (
        "Replies are read by the practice, usually within two working days. "
        "Email isn't watched out of hours, so please don't use it in an emergency."
    )

    # The practice's own words (also editable in the admin, see `with_saved` below).
    practice_name: str | None = None  # None: the sender name (from_name)
    sign_off: str | None = None  # how emails end; None: "Warmly," and the practice's name
    signup_heading: str | None = None  # None: the built-in heading and introduction
    signup_intro: str | None = None
    care_note: str = CARE_NOTE
    # Her own websites (origins, one a line) whose pages may post to /signup and frame its form.
    signup_origins: str | None = None
    poster_line: str | None = None  # the one line of her words on the printable poster

    # Operational knobs (not in the design's table; safe defaults).
    var_dir: Path = Path("var")
    schedules_dir: Path = Path("schedules")
    templates_dir: Path = Path("templates")
    redis_prefix: str = "nl:"
    batch_size: int = Field(default=1000, ge=1, le=1000)
    lease_seconds: int = Field(default=600, ge=5)
    # Sending processes of `newsletter tick` (engine.senders); 0: one per core, 1: in-process.
    tick_processes: int = Field(default=0, ge=0, le=64)
    webhook_tolerance_seconds: int = Field(default=600, ge=1)
    # Evidence of absence (engine.absence): a handed chunk with no event while the webhook
    # reports on later mail and answered every post 2xx is sent again after this many minutes.
    settle_window_minutes: int = Field(default=15, ge=1)
    # Accept unsigned SendGrid events when no public key is set: only for local trials.
    webhook_allow_unsigned: bool = False
    # Issue 16: who hears about a halt, a silent beat or a bad day (one email per problem and
    # day), who may read /metrics (a bearer token; unset: localhost only), the log line format,
    # and how many failed deliveries in a day make a bad day.
    admin_email: str | None = None
    metrics_token: SecretStr | None = None
    log_format: Literal["text", "json"] = "text"
    alert_failures: int = Field(default=20, ge=1)

    @field_validator("default_timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {value!r} (use an IANA name like Europe/London)"
            ) from None
        return value

    @field_validator("public_url", "sendgrid_host")
    @classmethod
    def _http_url(cls, value: str) -> str:
        return _check_url(value, ("https", "http"))

    @field_validator("smtp_url")
    @classmethod
    def _smtp_url(cls, value: str | None) -> str | None:
        return None if value is None else _check_url(value, ("smtp", "smtps"))

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        return (
            _check_url(value, ("redis", "rediss", "unix"))
            if not value.startswith("unix:")
            else value
        )

    @field_validator("database_url")
    @classmethod
    def _db_url(cls, value: str) -> str:
        if not value.startswith(("sqlite:", "postgresql")):
            raise ValueError(f"expected sqlite:///path or postgresql+psycopg://..., got {value!r}")
        return value

    # The practice's values: the rules the Settings page and every message use (core.identity).
    @field_validator("from_email", "reply_to")
    @classmethod
    def _email(cls, value: str) -> str:
        from newsletter.core.identity import header_address  # identity reads Settings' types

        return header_address(value)

    @field_validator("admin_email")
    @classmethod
    def _optional_email(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        from newsletter.core.identity import header_address

        return header_address(value)

    @field_validator(
        "from_name",
        "postal_address",
        "practice_name",
        "signup_heading",
        "care_note",
        "reply_note",
        "poster_line",
    )
    @classmethod
    def _one_line(cls, value: str | None) -> str | None:
        from newsletter.core.identity import one_line

        return None if value is None else one_line(value, LINE_MAX)

    @field_validator("signup_intro")
    @classmethod
    def _lines(cls, value: str | None) -> str | None:
        from newsletter.core.identity import lines

        return None if value is None else lines(value, LINE_MAX)

    @field_validator("signup_origins")
    @classmethod
    def _origins(cls, value: str | None) -> str | None:
        from newsletter.core.origins import origins

        return None if value is None else "\n".join(origins(value))

    @property
    def secret(self) -> str:
        """The signing key: from the environment, else generated once into var/secret_key.

        The file is read once per settings object and folder (a send signs two links per
        reader: reading the file each time cost 20 ms per 1,000 readers); a key changed in the
        file takes effect at the next start, as one changed in the environment does."""
        if self.secret_key is not None:
            return self.secret_key.get_secret_value()
        read = self._secret_read
        if read is not None and read[0] == self.var_dir:
            return read[1]
        path = self.var_dir / "secret_key"
        if not path.exists():
            _write_new_key(path)
        tighten(path)  # a key file from before, or copied in with a loose mode
        value = path.read_text().strip()
        self._secret_read = (self.var_dir, value)
        return value

    @property
    def environment(self) -> Settings:
        """These settings as the environment (or the code) set them, before any value saved in
        the admin: the same object unless these are effective settings made by `with_saved`."""
        return self._environment if self._environment is not None else self

    def with_saved(self, saved: Mapping[str, str]) -> Settings:
        """The effective settings: the admin's saved values (checked when saved) laid over the
        fields the environment leaves unset; a variable set in the environment always wins.

        Always made from `environment`, so effective settings made again from effective ones
        pick up a changed saved value (model_copy counts an updated field as set)."""
        base = self.environment
        fixed = base.model_fields_set
        typed = {k: _typed(k, v) for k, v in saved.items() if k not in fixed}
        update = {k: v for k, v in typed.items() if getattr(base, k) != v}
        if not update:
            return base
        made = base.model_copy(update=update)
        made._environment = base
        return made

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self:
        """A copy; of effective settings, one whose `environment` has the update too (a value
        given in code wins like a variable), with the same saved values laid over it."""
        if self._environment is None or not update:
            return super().model_copy(update=update, deep=deep)
        base = self._environment.model_copy(update=update, deep=deep)
        saved = {k: getattr(self, k) for k in self.saved_fields}
        return cast(Self, base.with_saved(saved))

    @property
    def saved_fields(self) -> set[str]:
        """The fields whose value is one saved in the admin (none for the environment's own)."""
        return self.model_fields_set - self.environment.model_fields_set

    @property
    def practice(self) -> str:
        """The practice's name as readers see it."""
        return self.practice_name or self.from_name

    @property
    def signoff(self) -> str:
        """How every email ends: the sign-off setting, or "Warmly," and the practice's name."""
        return (self.sign_off or "").strip() or f"Warmly,\n{self.practice}"

    @property
    def public_is_https(self) -> bool:
        return self.public_url.startswith("https://")


# Saved values are text; these fields hold them as SecretStr (never shown in a repr or a log).
SECRET_FIELDS = frozenset({"sendgrid_api_key"})


def _typed(name: str, value: Any) -> Any:
    """A saved value as its field holds it (a secret as SecretStr)."""
    if name in SECRET_FIELDS and isinstance(value, str):
        return SecretStr(value)
    return value


def _write_new_key(path: Path) -> None:
    """A new random key at `path`, 0600 in a 0700 folder (core.private_files), whole or not at
    all: written beside it, then linked into place unless another process was first (its key
    wins, and both read the same)."""
    partial = path.with_name(f".{path.name}.{secrets.token_hex(8)}")
    with open(create_private(partial), "w", encoding="utf-8") as handle:
        handle.write(secrets.token_urlsafe(48))
    try:
        os.link(partial, path)
    except FileExistsError:
        pass
    except OSError:  # no hard links on this file system: rename (still whole)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def load_settings(**overrides: object) -> Settings:
    """Build settings from the environment; raise ConfigError with a one-line message."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            field = str(err["loc"][0]) if err["loc"] else "?"
            msg = err["msg"].removeprefix("Value error, ")
            problems.append(f"{ENV_PREFIX}{field.upper()}: {msg}")
        raise ConfigError("; ".join(problems)) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (tests call `get_settings.cache_clear()`)."""
    return load_settings()


# --- the admin's saved values over these ---------------------------------------------------
# Some settings can also be edited in the admin (practice details, signup wording) and are kept
# in the database. Nothing here reads them: each entry point (a CLI command, a web request, a
# Celery task) builds the effective settings with `newsletter.store.practice.effective_settings`
# and passes them down; `Settings.with_saved` below is the rule it applies.
