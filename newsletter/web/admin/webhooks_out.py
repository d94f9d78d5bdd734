"""Settings > Webhooks (/admin/settings/webhooks): endpoints of her other tools, their delivery log, a test event.

The work is services.webhooks_out's; a new endpoint's secret is shown once, on the page the
form's POST answers (never in a cookie or a URL), then kept sealed.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import HTMLResponse, Response
from starlette.concurrency import run_in_threadpool

from newsletter.core.timing import utcnow
from newsletter.services import webhooks_out
from newsletter.web.admin.common import form_of, page, redirect, require_owner, settings_of

PATH = "/admin/settings/webhooks"
TEMPLATE = "admin/webhooks_out.html"
protected = APIRouter(prefix=PATH, dependencies=[Depends(require_owner)])


def _context(request: Request, **extra: Any) -> dict[str, Any]:
    return {
        "nav": "settings",
        "endpoints": webhooks_out.overview(settings_of(request)),
        "events": webhooks_out.EVENTS,
        "headers": {
            "signature": webhooks_out.SIGNATURE_HEADER,
            "event": webhooks_out.EVENT_HEADER,
            "delivery": webhooks_out.DELIVERY_HEADER,
        },
        "values": {"url": "", "events": list(webhooks_out.EVENTS), "include_email": False},
        "error": None,
        "new_secret": None,
        **extra,
    }


@protected.get("", response_class=HTMLResponse, include_in_schema=False)
def webhooks_page(request: Request) -> Response:
    return page(request, TEMPLATE, _context(request))


@protected.post("", include_in_schema=False)
async def add_endpoint(request: Request) -> Response:
    form = await form_of(request)
    values = {
        "url": str(form.get("url") or ""),
        "events": [str(e) for e in form.getlist("events")],
        "include_email": form.get("include_email") == "on",
    }
    try:
        _, secret = await run_in_threadpool(
            webhooks_out.add,
            settings_of(request),
            values["url"],
            values["events"],
            values["include_email"],
        )
    except webhooks_out.InvalidEndpoint as exc:
        return page(request, TEMPLATE, _context(request, error=str(exc), values=values), 422)
    return page(request, TEMPLATE, _context(request, new_secret=secret), 201)


@protected.post("/{endpoint_id}/test", include_in_schema=False)
async def send_test(request: Request, endpoint_id: int = Path(ge=1, le=2**31 - 1)) -> Response:
    await form_of(request)
    sent = await run_in_threadpool(
        webhooks_out.send_test, settings_of(request), endpoint_id, utcnow()
    )
    if not sent:
        return redirect(request, PATH, "That endpoint no longer exists.", "error")
    return redirect(request, PATH, "A test event is on its way: its delivery shows below.")


@protected.post("/{endpoint_id}/remove", include_in_schema=False)
async def remove_endpoint(
    request: Request, endpoint_id: int = Path(ge=1, le=2**31 - 1)
) -> Response:
    await form_of(request)
    await run_in_threadpool(webhooks_out.remove, settings_of(request), endpoint_id)
    return redirect(request, PATH, "Removed: that address hears nothing more.")
