"""The FastAPI application factory: one app, four routers, shared middleware."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles

from newsletter.core.config import Settings, get_settings
from newsletter.services import logs
from newsletter.web import admin, api, pages, public, security, webhooks
from newsletter.web.admin.common import OwnerOnly, current_session, owner_only_page


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app for these settings (tests pass their own).

    The app keeps the environment's settings; each request reads its effective ones (with the
    values saved on the Settings page) through `web.pages.settings_of`, so a save shows at once."""
    settings = (settings or get_settings()).environment
    # openapi_url=None: /openapi.json is served below, only to the admin or an API token.
    app = FastAPI(title="newsletter", version="1", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.settings = settings
    app.include_router(public.router)
    app.include_router(webhooks.router)
    app.include_router(admin.router)
    app.include_router(api.router)

    @app.get("/openapi.json", include_in_schema=False)
    async def openapi_json(request: Request) -> JSONResponse:
        signed_in = await run_in_threadpool(current_session, request) is not None
        return await api.openapi_document(request, signed_in)

    # WEB: security headers, CSRF cookie, body limits, friendly error pages, /static.
    security.install(app, settings)
    app.add_exception_handler(OwnerOnly, owner_only_page)  # an assistant on an owner's page
    security.redact_access_log()
    logs.configure(settings.log_format)  # one scrubbing handler, text or JSON lines (issue 16)
    app.mount("/static", StaticFiles(directory=pages.STATIC_DIR), name="static")
    return app
