"""The dashboard (/admin) and lifting a sending halt."""

from __future__ import annotations

from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response

from newsletter.core.timing import utcnow
from newsletter.engine.reconcile import waiting_for_provider
from newsletter.engine.webhook_flow import webhook_flow
from newsletter.services import reports
from newsletter.store import stats
from newsletter.store.db import session_scope
from newsletter.store.halt import halted as current_halt
from newsletter.store.halt import resume
from newsletter.web.admin.common import (
    Db,
    form_of,
    page,
    redirect,
    require_admin,
    settings_of,
)
from newsletter.web.public.health import dashboard_context

protected = APIRouter(prefix="/admin", dependencies=[Depends(require_admin)])


@protected.get("", response_class=HTMLResponse, include_in_schema=False)
def dashboard(request: Request, db: Db) -> Response:
    settings = settings_of(request)
    now = utcnow()
    counts = stats.status_counts(db, now)
    week = stats.week_ahead(db, now, settings.default_timezone)
    recent = stats.last_days(db, now)
    halted = stats.sending_halted(db)
    halt = current_halt(db, settings) if halted else None
    next_send = stats.next_send(db, now)
    steps = reports.checklist(settings, db)
    return page(
        request,
        "admin/dashboard.html",
        {
            "nav": "dashboard",
            "counts": counts,
            "week": week,
            "recent": recent,
            "halted": halted,
            "halt_kind": halt.kind if halt is not None else None,
            "next_send": next_send,
            "steps": steps,
            "steps_left": sum(not step.done for step in steps),
            "backend": settings.mail_backend,
            "waiting": waiting_for_provider(settings, db, now),  # issue 27 (admin/_waiting.html)
            "waiting_zone": settings.default_timezone,
            "flow": webhook_flow(settings, db, now),  # admin/_webhook_flow.html
            "flow_zone": settings.default_timezone,
            "series_queued": any(step.done for step in steps if step.key == "queue"),
            "today": now.astimezone(ZoneInfo(settings.default_timezone)).date(),
            **dashboard_context(
                request
            ),  # issue 16: the sending line and alerts (admin/_health.html)
        },
    )


@protected.post("/sending/resume", include_in_schema=False)
async def resume_sending(request: Request) -> Response:
    await form_of(request)
    with session_scope(settings_of(request).database_url) as session:
        lifted = resume(session)
    return redirect(
        request,
        "/admin",
        "Sending is on again; what is due goes out within a minute."
        if lifted
        else "Sending was already on.",
    )
