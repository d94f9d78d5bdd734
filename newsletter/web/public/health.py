"""Public route: the health check (database and Redis reachable)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text

from newsletter.store.db import session_scope
from newsletter.web.pages import settings_of
from newsletter.web.security import redis_for

router = APIRouter()


@router.get("/healthz")
def healthz(request: Request) -> JSONResponse:
    settings = settings_of(request)
    checks: dict[str, str] = {}
    try:
        with session_scope(settings.database_url) as session:
            session.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = f"error: {type(exc).__name__}"
    try:
        redis_for(request).ping()
        checks["redis"] = "ok"
    except Exception as exc:
        checks["redis"] = f"error: {type(exc).__name__}"
    healthy = all(v == "ok" for v in checks.values())
    return JSONResponse(
        {"status": "ok" if healthy else "error", **checks}, status_code=200 if healthy else 503
    )
