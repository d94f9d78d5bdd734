"""The dashboard (/admin) and lifting a sending halt."""

from __future__ import annotations

from dataclasses import dataclass
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from newsletter.core.config import Settings
from newsletter.store import practice, stats
from newsletter.store.db import session_scope
from newsletter.store.halt import halted as current_halt
from newsletter.store.halt import resume
from newsletter.store.models import ProviderEvent, Series, utcnow
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


@dataclass(frozen=True)
class Step:
    label: str
    done: bool
    href: str
    detail: str


def _changed(settings: Settings, name: str) -> bool:
    return getattr(settings, name) != Settings.model_fields[name].default


def checklist(settings: Settings, db: Session) -> list[Step]:
    """The first-run steps, each ticked from real state (settings, ledger, events, series)."""
    details = all(_changed(settings, n) for n in ("from_name", "from_email", "postal_address"))
    sendgrid = settings.mail_backend == "sendgrid" and settings.sendgrid_api_key is not None
    events = db.scalar(select(ProviderEvent.id).limit(1)) is not None
    queued = db.scalar(select(Series.id).where(Series.queued_at.is_not(None)).limit(1))
    return [
        Step(
            "Set your practice details",
            details,
            "/admin/settings",
            "Your name, sender address and postal address, instead of the examples.",
        ),
        Step(
            "Send yourself a test",
            practice.test_sent(db),
            "/admin/series",
            "Open a part's preview and send it to your own address.",
        ),
        Step(
            "Connect SendGrid",
            sendgrid,
            "/admin/outbox",
            "Set NEWSLETTER_MAIL_BACKEND=sendgrid and NEWSLETTER_SENDGRID_API_KEY on the server;"
            " until then every email waits in the outbox.",
        ),
        Step(
            "Connect SendGrid's event webhook",
            events,
            "",
            f"Point SendGrid's Event Webhook at {settings.public_url}/webhooks/sendgrid so"
            " bounces and unsubscribes come back; ticked when the first event arrives.",
        ),
        Step(
            "Queue your first series",
            queued is not None,
            "/admin/series",
            "Choose a start date on the Series page.",
        ),
    ]


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
    steps = checklist(settings, db)
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
            "today": now.astimezone(ZoneInfo(settings.default_timezone)).date(),
            **dashboard_context(request),  # issue 16: beat, workers, alerts (admin/_health.html)
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
        "Sending is on again; the next tick sends what is due."
        if lifted
        else "Sending was already on.",
    )
