"""The mail provider connected in the admin: its rows in practice_settings, secrets sealed, opened for the effective settings.

The Settings page for mail (/admin/settings/mail) saves which backend sends (`mail_backend`), the
SendGrid API key, the Event Webhook's signing public key, the webhook's id at SendGrid, and the SMTP
server (one `smtp_url`, user and password inside). The API key and the SMTP URL are sealed
(core.sealing: Fernet under a key derived from the secret key), so the database and its backups
never hold them readable. `store.practice.effective_settings` lays the opened values over the
environment's like the practice details: a variable set in the environment always wins.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from newsletter.core import sealing
from newsletter.core.config import ENV_PREFIX, Settings
from newsletter.store.models import PracticeSetting, utcnow

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Field:
    name: str  # the Settings attribute (NEWSLETTER_<NAME> in the environment), or a note
    sealed: bool  # kept sealed in the database
    setting: bool = True  # laid over Settings (False: only the page reads it)

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.name.upper()


# The provider's rows; adding one is one line here (plus a Settings attribute when `setting`).
FIELDS: tuple[Field, ...] = (
    Field("mail_backend", sealed=False),
    Field("sendgrid_api_key", sealed=True),
    Field("sendgrid_webhook_public_key", sealed=False),  # a public key: nothing to hide
    Field("smtp_url", sealed=True),  # smtp(s)://user:password@host:port
    Field("provider_webhook_id", sealed=False, setting=False),  # SendGrid's id of our webhook
    Field("provider_connected_at", sealed=False, setting=False),
)
BY_NAME: dict[str, Field] = {f.name: f for f in FIELDS}
SETTINGS: tuple[str, ...] = tuple(f.name for f in FIELDS if f.setting)


def fixed_by_environment(settings: Settings) -> list[str]:
    """The provider variables the server sets (each one wins over what the page saves)."""
    return [
        ENV_PREFIX + name.upper()
        for name in SETTINGS
        if name in settings.environment.model_fields_set
    ]


def rows(session: Session) -> dict[str, str]:
    """The provider's rows as stored (sealed values still sealed)."""
    found = session.execute(
        select(PracticeSetting.key, PracticeSetting.value).where(
            PracticeSetting.key.in_(list(BY_NAME))
        )
    ).all()
    return {key: value for key, value in found}


def opened(stored: Mapping[str, str], secret: str) -> dict[str, str]:
    """The stored rows with sealed values opened. When one does not open (the secret key
    changed since it was saved) no provider value is used at all: mail waits in test mode
    rather than going out half-configured."""
    values: dict[str, str] = {}
    for name, value in stored.items():
        field = BY_NAME.get(name)
        if field is None:
            continue
        if not field.sealed:
            values[name] = value
            continue
        try:
            values[name] = sealing.unseal(secret, value)
        except sealing.SealError:
            log.error(
                "mail provider: the saved %s cannot be opened with this secret key "
                "(NEWSLETTER_SECRET_KEY changed?); connect the provider again in Settings",
                name,
            )
            return {}
    return values


def unreadable(stored: Mapping[str, str], secret: str) -> bool:
    """Whether rows are saved that this secret key cannot open."""
    return bool(stored) and not opened(stored, secret)


def replace(session: Session, values: Mapping[str, str], secret: str) -> None:
    """Make the provider rows exactly `values` (the others removed), sealing what is secret.
    The caller drops the effective-settings cache (store.practice.forget) after commit."""
    unknown = set(values) - set(BY_NAME)
    if unknown:
        raise ValueError(f"not a provider field: {sorted(unknown)}")
    chosen = select(PracticeSetting).where(PracticeSetting.key.in_(list(BY_NAME)))
    current = {r.key: r for r in session.scalars(chosen)}
    now = utcnow()
    for name, gone in current.items():
        if not values.get(name):
            session.delete(gone)
    for name, value in values.items():
        if not value:
            continue
        stored = sealing.seal(secret, value) if BY_NAME[name].sealed else value
        row = current.get(name)
        if row is None:
            session.add(PracticeSetting(key=name, value=stored, updated_at=now))
        else:
            row.value, row.updated_at = stored, now
    session.flush()
