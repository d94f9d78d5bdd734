"""Settings > Mail (/admin/settings/mail): connect SendGrid or SMTP, send a test to me, disconnect.

The work is services.provider's; this page shows what sends, which server variables fix it (they
win, and the forms are then read-only), and turns each form into one call. Only the owner may
use it (`require_owner`: an assistant gets the 403 page).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response
from starlette.concurrency import run_in_threadpool

from newsletter.services import provider
from newsletter.services.provider_sendgrid import REQUIRED_SCOPES, SCOPE_NAMES
from newsletter.web.admin.common import form_of, page, redirect, require_owner, settings_of

PATH = "/admin/settings/mail"
protected = APIRouter(prefix=PATH, dependencies=[Depends(require_owner)])


def _context(request: Request, **extra: Any) -> dict[str, Any]:
    settings = settings_of(request)
    return {
        "nav": "settings",
        "status": provider.status(settings),
        "permissions": [SCOPE_NAMES[s] for s in REQUIRED_SCOPES],
        # the signed-in person's own address (the operator has none: the practice's reply-to)
        "test_to": getattr(getattr(request.state, "who", None), "email", "") or settings.reply_to,
        "smtp": {"host": "", "port": "587", "security": "starttls", "user": ""},
        "error": None,
        **extra,
    }


@protected.get("", response_class=HTMLResponse, include_in_schema=False)
def mail_page(request: Request) -> Response:
    return page(request, "admin/provider.html", _context(request))


@protected.post("/sendgrid", include_in_schema=False)
async def connect_sendgrid(request: Request) -> Response:
    form = await form_of(request)
    settings = settings_of(request)
    try:
        await run_in_threadpool(provider.connect_sendgrid, settings, str(form.get("api_key") or ""))
    except provider.NotConnected as exc:
        context = _context(request, error=str(exc), error_form="sendgrid")
        return page(request, "admin/provider.html", context, 422)
    return redirect(
        request,
        PATH,
        "SendGrid is connected: email goes out for real, and bounces and unsubscribes come back "
        "signed. Send yourself a test below.",
    )


@protected.post("/smtp", include_in_schema=False)
async def connect_smtp(request: Request) -> Response:
    form = await form_of(request)
    fields = {k: str(form.get(k) or "") for k in ("host", "port", "security", "user", "password")}
    try:
        await run_in_threadpool(provider.connect_smtp, settings_of(request), **fields)
    except provider.NotConnected as exc:
        shown = {k: v for k, v in fields.items() if k != "password"}  # never echoed back
        context = _context(request, error=str(exc), error_form="smtp", smtp=shown)
        return page(request, "admin/provider.html", context, 422)
    return redirect(
        request, PATH, "Your mail server is connected: email goes out for real. Send a test below."
    )


@protected.post("/test", include_in_schema=False)
async def send_test(request: Request) -> Response:
    form = await form_of(request)
    result = await run_in_threadpool(
        provider.send_test, settings_of(request), str(form.get("to") or "")
    )
    if result.ok:
        return redirect(request, PATH, "Test sent to the address you gave.")
    return redirect(request, PATH, f"Test not sent: {result.detail}.", "error")


@protected.post("/disconnect", include_in_schema=False)
async def disconnect(request: Request) -> Response:
    await form_of(request)
    try:
        await run_in_threadpool(provider.disconnect, settings_of(request))
    except provider.NotConnected as exc:
        return redirect(request, PATH, str(exc), "error")
    return redirect(
        request, PATH, f"Disconnected. {provider.TEST_MODE}: email is kept here, not sent."
    )
