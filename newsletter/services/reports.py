"""The therapist's reports: the delivery ledger listed and the first-run steps, as frozen values
the admin, the API and the CLI show."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from newsletter.core.config import Settings
from newsletter.store import practice
from newsletter.store.models import Delivery, ProviderEvent, Series


@dataclass(frozen=True)
class DeliveryLine:
    """One row of the delivery ledger, with its series' slug."""

    id: int
    subscriber_id: int | None
    series: str
    part: int
    status: str
    scheduled_for: dt.datetime
    sent_at: dt.datetime | None
    delivered_at: dt.datetime | None
    attempts: int
    last_error: str | None


def deliveries(
    session: Session,
    *,
    status: str | None = None,
    series: str | None = None,
    subscriber_id: int | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[DeliveryLine]:
    """The ledger, newest first, filtered by status, series slug and person when given."""
    stmt = select(Delivery, Series.slug).join(Series, Series.id == Delivery.series_id)
    if status:
        stmt = stmt.where(Delivery.status == status)
    if series:
        stmt = stmt.where(Series.slug == series)
    if subscriber_id:
        stmt = stmt.where(Delivery.subscriber_id == subscriber_id)
    rows = session.execute(
        stmt.order_by(Delivery.scheduled_for.desc(), Delivery.id.desc()).limit(limit).offset(offset)
    )
    return [
        DeliveryLine(
            d.id,
            d.subscriber_id,
            slug,
            d.part_number,
            d.status,
            d.scheduled_for,
            d.sent_at,
            d.delivered_at,
            d.attempts,
            d.last_error,
        )
        for d, slug in rows
    ]


@dataclass(frozen=True)
class Step:
    """One first-run step on the dashboard, ticked from real state."""

    label: str
    done: bool
    href: str
    detail: str
    key: str = ""


def _changed(settings: Settings, name: str) -> bool:
    return getattr(settings, name) != Settings.model_fields[name].default


def checklist(settings: Settings, session: Session) -> list[Step]:
    """The first-run steps, each ticked from real state (settings, ledger, events, series)."""
    details = all(_changed(settings, n) for n in ("from_name", "from_email", "postal_address"))
    sendgrid = settings.mail_backend == "sendgrid" and settings.sendgrid_api_key is not None
    events = session.scalar(select(ProviderEvent.id).limit(1)) is not None
    queued = session.scalar(select(Series.id).where(Series.queued_at.is_not(None)).limit(1))
    return [
        Step(
            "Set your practice details",
            details,
            "/admin/settings",
            "Your name, sender address and postal address, instead of the examples.",
        ),
        Step(
            "Send yourself a test",
            practice.test_sent(session),
            "/admin/series",
            "Open a part's preview and send it to your own address.",
        ),
        Step(
            "Connect SendGrid",
            sendgrid,
            "/admin/settings/mail",
            "Paste a SendGrid API key at Settings > Mail; until then every email is kept, not"
            " sent (test mode).",
        ),
        Step(
            "Connect SendGrid's event webhook",
            events,
            "",
            f"Point SendGrid's Event Webhook at {settings.public_url}/webhooks/sendgrid so"
            " bounces and unsubscribes come back; done when the first report arrives.",
        ),
        Step(
            "Queue your first series",
            queued is not None,
            "/admin/series",
            "Choose a start date on the Series page.",
            "queue",
        ),
    ]
