"""The 'sending halted' switch: one row in app_state, and its one rule for a fix that lifts it.

Three kinds. The provider refused our credentials (401/403): nothing is sent until the operator
changes the key (a halt recorded for one key no longer applies once another is configured) or
resumes by hand. The practice's own settings can't make a message (a tab in the sender address):
nothing is sent until those values change (the halt keeps their fingerprint and lifts itself
once the effective ones differ) or the operator resumes by hand. The practice's email templates
can't be rendered (a Jinja syntax error, an undefined name): the same, with a fingerprint of the
template files (`templates_fingerprint`), so saving a fixed template lifts it. The engine records a halt for
articles, the mail service for every other message; both read it here.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from newsletter.core.config import ConfigError, Settings, get_settings
from newsletter.core.identity import configured_fingerprint, practice_fingerprint
from newsletter.core.vocabulary import HALT_CREDENTIALS, HALT_PRACTICE, HALT_TEMPLATE
from newsletter.store.models import AppState
from newsletter.store.practice import effective_settings

HALT_KEY = "sending_halted"


def templates_fingerprint(folder: Path) -> str:
    """A short hash of every file under the templates folder (names and contents): a template
    halt recorded for one version of them no longer applies once any file changed."""
    digest = hashlib.sha256()
    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
        digest.update(f"{path.relative_to(folder)}\0".encode())
        try:
            digest.update(path.read_bytes())
        except OSError:  # unreadable now: counts as a version of its own
            digest.update(b"\0unreadable")
        digest.update(b"\0")
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class Halt:
    """Why sending stopped, when, and a hash of what was refused: the credentials (never the
    key itself), the practice's values or its template files."""

    reason: str
    at: dt.datetime
    fingerprint: str | None
    kind: str = HALT_CREDENTIALS


# kind -> the fingerprint of what a halt of that kind was recorded for, as it is now: the halt
# holds while the two are equal.
FINGERPRINT_NOW: dict[str, Callable[[Settings], str]] = {
    HALT_PRACTICE: lambda settings: practice_fingerprint(effective_settings(settings)),
    HALT_TEMPLATE: lambda settings: templates_fingerprint(Path(settings.templates_dir)),
}


def recorded_halt(session: Session) -> Halt | None:
    """The halt row as stored, whatever the configured key is now."""
    row = session.get(AppState, HALT_KEY)
    if row is None:
        return None
    try:
        data = json.loads(row.value)
        return Halt(
            reason=str(data["reason"]),
            at=dt.datetime.fromisoformat(data["at"]),
            fingerprint=data.get("fingerprint"),
            kind=str(data.get("kind") or HALT_CREDENTIALS),
        )
    except (ValueError, KeyError, TypeError):
        return Halt(reason=row.value, at=row.updated_at, fingerprint=None)


def halted(session: Session, settings: Settings | None = None) -> Halt | None:
    """The current halt, or None while sending is allowed.

    A halt recorded for one SendGrid API key no longer applies once the configured key is a
    different one (the operator fixed it); one recorded for the practice's values, once the
    effective values differ; one for the templates, once a template file changed. `settings`
    defaults to the process settings.
    """
    current = recorded_halt(session)
    if current is None or current.fingerprint is None:
        return current
    if settings is None:
        try:
            settings = get_settings()
        except ConfigError:
            return current
    if current.kind in FINGERPRINT_NOW:
        return current if FINGERPRINT_NOW[current.kind](settings) == current.fingerprint else None
    now_fp = configured_fingerprint(settings)
    if now_fp is not None and now_fp != current.fingerprint:
        return None
    return current


def halt(
    session: Session,
    reason: str,
    key_fingerprint: str | None = None,
    kind: str = HALT_CREDENTIALS,
) -> None:
    """Stop all sending (idempotent; keeps an earlier fingerprint of the same kind when none is
    given)."""
    current = recorded_halt(session)
    if key_fingerprint is None and current is not None and current.kind == kind:
        key_fingerprint = current.fingerprint
    value = json.dumps(
        {
            "reason": reason[:500],
            "at": dt.datetime.now(dt.UTC).isoformat(),
            "fingerprint": key_fingerprint,
            "kind": kind,
        }
    )
    row = session.get(AppState, HALT_KEY)
    if row is None:
        session.add(AppState(key=HALT_KEY, value=value))
    else:
        row.value = value
    session.flush()


def resume(session: Session) -> bool:
    """Allow sending again; True when a halt was lifted."""
    row = session.scalar(select(AppState).where(AppState.key == HALT_KEY))
    if row is None:
        return False
    session.delete(row)
    session.flush()
    return True
