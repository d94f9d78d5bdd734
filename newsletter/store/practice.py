"""Practice settings saved in the admin: which fields, how each is checked, and laying them over Settings.

The practice's details (name, sender, reply-to, postal address, default zone) and the signup
page's wording live in the `practice_settings` table, one row a field, so a therapist can set them
in the browser. A variable set in the environment (NEWSLETTER_FROM_NAME, …) always wins, and the
admin page says which fields the server fixes.

Every entry point (CLI command, web request, Celery task) builds the effective settings with
`effective_settings(settings)` and passes them down: doctor, every backend, every render and every
page read the same values; nothing is registered on import. The saved rows are cached per process
for a few seconds (one small query, not one per page or chunk) and the cache is dropped on save,
so the web process sees a change at once and a worker within CACHE_SECONDS.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from newsletter.core import identity, origins
from newsletter.core.config import ENV_PREFIX, Settings
from newsletter.store import provider
from newsletter.store.db import get_engine, session_scope
from newsletter.store.models import AppState, PracticeSetting, utcnow

CACHE_SECONDS = 5.0


def _line(value: str) -> str:
    return identity.one_line(value, 200)


def _text(value: str) -> str:
    # a browser's CRLF arrives as LF (web/forms.py at the edge); any CR left is refused
    return identity.lines(value, 2000)


def _email(value: str) -> str:
    return identity.header_address(value)  # the rule mail.mime builds the headers with


def _zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"{value!r} is not a time zone; choose one from the list (like America/New_York)."
        ) from None
    return value


@dataclass(frozen=True)
class Field:
    name: str  # the Settings attribute (and NEWSLETTER_<NAME> in the environment)
    label: str
    hint: str
    kind: str  # a key of CHECKS
    required: bool = False

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.name.upper()


def _origins(value: str) -> str:
    # one a line: a control character other than a line break or tab is named, as in a text
    return "\n".join(origins.origins(identity.lines(value, 2000)))


CHECKS: dict[str, Callable[[str], str]] = {
    "line": _line,
    "origins": _origins,
    "text": _text,
    "email": _email,
    "zone": _zone,
}

# The editable fields, in page order: adding one is one line here (plus a Settings attribute).
FIELDS: tuple[Field, ...] = (
    Field("practice_name", "Practice name", "At the top of every email and page.", "line"),
    Field("from_name", "Sender name", "The name readers see in their inbox.", "line", True),
    Field(
        "from_email",
        "Sender address",
        "Must be an address your mail provider lets you send from.",
        "email",
        True,
    ),
    Field("reply_to", "Reply-to address", "Where a reader's reply goes.", "email", True),
    Field(
        "postal_address",
        "Postal address",
        "The law in most countries wants it in every newsletter email.",
        "line",
        True,
    ),
    Field(
        "default_timezone",
        "Default time zone",
        "For readers who have not chosen one, and for times in this admin.",
        "zone",
        True,
    ),
    Field(
        "sign_off",
        "Sign-off",
        "How every email ends; a new line for your name. Empty: “Warmly,” and the practice name.",
        "text",
    ),
    Field("signup_heading", "Signup page heading", "The big line on the signup page.", "line"),
    Field(
        "signup_intro",
        "Signup page introduction",
        "A few sentences under the heading; a blank line starts a new paragraph.",
        "text",
    ),
    Field(
        "care_note",
        "Care note",
        "Under every email and on the signup page: what these articles are not.",
        "text",
        True,
    ),
    Field(
        "signup_origins",
        "Your websites",
        "Sites that may show your signup form (one a line, like https://www.example.com). "
        "Forms there send people here to sign up.",
        "origins",
    ),
    Field(
        "poster_line",
        "Poster line",
        "One line of yours on the printable poster, above the QR code.",
        "line",
    ),
)
BY_NAME: dict[str, Field] = {f.name: f for f in FIELDS}


def fixed_by_environment(settings: Settings) -> set[str]:
    """The editable fields the server sets (an environment variable, or a value given in code)."""
    return {f.name for f in FIELDS if f.name in settings.environment.model_fields_set}


def saved(session: Session) -> dict[str, str]:
    """The values the admin saved, by field name."""
    rows = session.execute(select(PracticeSetting.key, PracticeSetting.value)).all()
    return {key: value for key, value in rows if key in BY_NAME}


def check(values: Mapping[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """(clean values, errors by field) for a submitted form; an empty value means "the default"."""
    clean: dict[str, str] = {}
    errors: dict[str, str] = {}
    for name, raw in values.items():
        field = BY_NAME.get(name)
        if field is None:
            continue
        # only spaces (and a text's blank lines) are trimmed: a control character at either
        # end is refused like one inside, never silently dropped
        value = raw.strip(" \n" if field.kind == "text" else " ")
        if not value:
            clean[name] = ""
            continue
        try:
            clean[name] = CHECKS[field.kind](value)
        except ValueError as exc:
            errors[name] = _sentence(str(exc))
    return clean, errors


def _sentence(reason: str) -> str:
    reason = reason.rstrip(".")
    return f"{reason[:1].upper()}{reason[1:]}."


def save(session: Session, values: Mapping[str, str]) -> None:
    """Store checked values ("" removes the row: back to the default) and drop the cache."""
    rows = {r.key: r for r in session.scalars(select(PracticeSetting))}
    now = utcnow()
    for name, value in values.items():
        row = rows.get(name)
        if not value:
            if row is not None:
                session.delete(row)
        elif row is None:
            session.add(PracticeSetting(key=name, value=value, updated_at=now))
        elif row.value != value:
            row.value = value
            row.updated_at = now
    session.flush()
    forget()


# --- the effective settings: environment over saved rows, cached, dropped on save ------------


@dataclass
class _Read:
    """The saved rows of one database as last read, and the effective settings last made."""

    engine: Engine
    until: float  # time.monotonic() after which the rows are read again
    values: dict[str, str]
    made: tuple[Settings, Settings] | None = None  # (environment settings, effective ones)


_cache: dict[str, _Read] = {}


def forget() -> None:
    _cache.clear()


def _read(url: str, session: Session | None) -> _Read:
    engine = get_engine(url)
    found = _cache.get(url)
    now = time.monotonic()
    # A new engine (after dispose_all: a fork, or the next test) reads again.
    if found is not None and found.engine is engine and now < found.until:
        return found
    if session is not None:  # the caller's transaction: its errors are the caller's
        values = saved(session) | provider.rows(session)
    else:
        try:
            with session_scope(url) as own:
                values = saved(own) | provider.rows(own)
        except SQLAlchemyError:  # not migrated yet: the built-in defaults
            values = {}
    found = _cache[url] = _Read(engine, now + CACHE_SECONDS, values)
    return found


def effective_settings(settings: Settings, session: Session | None = None) -> Settings:
    """The effective settings: the values saved on the Settings page laid over the fields the
    environment leaves unset (the environment wins: `Settings.with_saved`).

    Every entry point calls this (each CLI command, each web request, each Celery task) and
    passes the result down: doctor, the backends, the renderer and the pages all read these.
    Effective settings given again are made afresh from their environment's. The rows are read
    at most once per CACHE_SECONDS per process and database (through `session` when given), and
    the same object comes back while neither they nor `settings.environment` change."""
    base = settings.environment
    read = _read(base.database_url, session)
    if read.made is not None and read.made[0] is base:
        return read.made[1]
    made = settings.with_saved(
        _laid_over(read.values, base)
    )  # from `base`, whatever `settings` are
    read.made = (base, made)
    return made


def _laid_over(values: Mapping[str, str], base: Settings) -> dict[str, str]:
    """The saved values Settings take: the practice's, and the mail provider's opened
    (store.provider; its sealed values need the secret key, read only when there are some)."""
    chosen = {k: v for k, v in values.items() if k in BY_NAME}
    stored = {k: v for k, v in values.items() if k in provider.BY_NAME}
    if stored:
        chosen |= {
            k: v for k, v in provider.opened(stored, base.secret).items() if k in provider.SETTINGS
        }
    return chosen


# --- first-run facts the dashboard checklist reads ------------------------------------------

TEST_SENT_KEY = "checklist:test_sent_at"


def note_test_sent(session: Session) -> None:
    """Remember that a test email went out (the checklist's "send yourself a test")."""
    row = session.get(AppState, TEST_SENT_KEY)
    if row is None:
        session.add(AppState(key=TEST_SENT_KEY, value=utcnow().isoformat()))


def test_sent(session: Session) -> bool:
    return session.get(AppState, TEST_SENT_KEY) is not None
