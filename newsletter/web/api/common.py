"""What every API route shares: the bearer-token check, settings and session dependencies, errors."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Path, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel
from sqlalchemy.orm import Session

from newsletter.core.config import Settings
from newsletter.core.vocabulary import WEEKDAYS
from newsletter.services import auth
from newsletter.store.db import session_scope

MAX_IMPORT_BYTES = 50 * 1024 * 1024
SLUG = r"^[A-Za-z0-9][A-Za-z0-9_-]*$"
DAYS = WEEKDAYS

bearer = HTTPBearer(
    auto_error=False, description="An API token from `newsletter admin create-token NAME`."
)


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_session(settings: Annotated[Settings, Depends(get_settings)]) -> Iterator[Session]:
    with session_scope(settings.database_url) as session:
        yield session


def require_token(
    settings: Annotated[Settings, Depends(get_settings)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> str:
    """The token's name; 401 without a known bearer token."""
    if credentials is not None and credentials.scheme.lower() == "bearer":
        with session_scope(settings.database_url) as session:
            row = auth.check_token(session, credentials.credentials)
            if row is not None:
                return row.name
    raise HTTPException(
        401, "a valid API token is needed (Authorization: Bearer …)", {"WWW-Authenticate": "Bearer"}
    )


class ErrorOut(BaseModel):
    detail: str


ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorOut, "description": "No valid API token"},
}


SessionDep = Annotated[Session, Depends(get_session)]
SettingsDep = Annotated[Settings, Depends(get_settings)]


SubscriberId = Annotated[int, Path(ge=1, le=2**31 - 1)]
