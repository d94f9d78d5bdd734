"""API tokens as the owner manages them in the browser: the list, a new one shown once, revoking."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from newsletter.core.config import Settings
from newsletter.services import auth
from newsletter.store.db import session_scope


@dataclass(frozen=True)
class TokenInfo:
    """A token as the page lists it: never its value (only its hash is kept)."""

    id: int
    name: str
    created_at: dt.datetime
    last_used_at: dt.datetime | None


def overview(settings: Settings) -> list[TokenInfo]:
    with session_scope(settings.database_url) as session:
        return [
            TokenInfo(t.id, t.name, t.created_at, t.last_used_at) for t in auth.list_tokens(session)
        ]


def add(settings: Settings, name: str) -> str:
    """A new token named `name` (ValueError naming what is wrong); its value, to show once."""
    with session_scope(settings.database_url) as session:
        return auth.create_token(session, name)


def revoke(settings: Settings, token_id: int) -> bool:
    """Revoke one token: a tool using it is refused from the next request. False when gone."""
    with session_scope(settings.database_url) as session:
        return auth.revoke_token(session, token_id)
