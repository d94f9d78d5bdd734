"""Routes: the JSON API under /api/v1 (bearer token), one module per area."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from newsletter.web.api import broadcasts, calendar, reports, series, subscribers
from newsletter.web.api.common import ERRORS, NO_TOKEN, get_settings, require_token, token_name

router = APIRouter(
    prefix="/api/v1", tags=["api"], dependencies=[Depends(require_token)], responses=ERRORS
)
for area in (series, subscribers, reports, broadcasts, calendar):
    router.include_router(area.router)


async def openapi_document(request: Request, admin_signed_in: bool) -> JSONResponse:
    """/openapi.json for the admin (session) or an API token holder; 401 for anyone else."""
    header = request.headers.get("authorization")
    if (
        not admin_signed_in
        and await run_in_threadpool(token_name, get_settings(request), header) is None
    ):
        return JSONResponse(
            {"detail": NO_TOKEN}, status_code=401, headers={"WWW-Authenticate": "Bearer"}
        )
    return JSONResponse(request.app.openapi())
