"""Routes: the JSON API under /api/v1 (bearer token), one module per area."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from newsletter.web.api import reports, series, subscribers
from newsletter.web.api.common import ERRORS, require_token

router = APIRouter(
    prefix="/api/v1", tags=["api"], dependencies=[Depends(require_token)], responses=ERRORS
)
for area in (series, subscribers, reports):
    router.include_router(area.router)
