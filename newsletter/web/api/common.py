"""What every API route shares: the bearer-token check, settings and session dependencies, errors."""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Iterator
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Path, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.security.utils import get_authorization_scheme_param
from pydantic import BaseModel

from newsletter.core.config import Settings
from newsletter.core.vocabulary import WEEKDAYS
from newsletter.services import auth
from newsletter.store.db import Session, session_scope
from newsletter.web.pages import settings_of
from newsletter.web.security import body_limit

# The CSV import's cap is the /api row of the one body-limit table (checked before the token).
MAX_IMPORT_BYTES = body_limit("/api/v1/subscribers/import")
SLUG = r"^[A-Za-z0-9][A-Za-z0-9_-]*$"
DAYS = WEEKDAYS

bearer = HTTPBearer(
    auto_error=False, description="An API token from `newsletter admin create-token NAME`."
)


def get_settings(request: Request) -> Settings:
    """This request's effective settings (web/pages.py): what the admin pages use too."""
    return settings_of(request)


def get_session(settings: Annotated[Settings, Depends(get_settings)]) -> Iterator[Session]:
    with session_scope(settings.database_url) as session:
        yield session


NO_TOKEN = "a valid API token is needed (Authorization: Bearer …)"


def token_name(settings: Settings, authorization: str | None) -> str | None:
    """The name of the API token in an Authorization header; None when it is not a known one."""
    scheme, value = get_authorization_scheme_param(authorization)
    if scheme.lower() != "bearer" or not value:
        return None
    with session_scope(settings.database_url) as session:
        row = auth.check_token(session, value)
        return row.name if row is not None else None


def no_token() -> HTTPException:
    return HTTPException(401, NO_TOKEN, {"WWW-Authenticate": "Bearer"})


def require_token(
    request: Request,
    settings: Annotated[Settings, Depends(get_settings)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> str:
    """The token's name; 401 without a known bearer token (TokenFirstRoute checked it already;
    this dependency is what puts the bearer scheme into /openapi.json)."""
    name: str | None = getattr(request.state, "api_token", None)
    if name is None and credentials is not None:
        name = token_name(settings, f"{credentials.scheme} {credentials.credentials}")
    if name is None:
        raise no_token()
    return name


class TokenFirstRoute(APIRoute):
    """An API route that checks the bearer token before FastAPI reads or parses the body:
    a stranger gets 401, never the parser's opinion of what they sent."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def token_first(request: Request) -> Response:
            settings = get_settings(request)
            header = request.headers.get("authorization")
            name = await run_in_threadpool(token_name, settings, header)
            if name is None:
                raise no_token()
            request.state.api_token = name
            return await handler(request)

        return token_first


class ErrorOut(BaseModel):
    detail: str


ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorOut, "description": "No valid API token"},
}


SessionDep = Annotated[Session, Depends(get_session)]
SettingsDep = Annotated[Settings, Depends(get_settings)]


SubscriberId = Annotated[int, Path(ge=1, le=2**31 - 1)]
