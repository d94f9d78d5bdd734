"""About this server (/admin/about): the one admin page that names the technical facts.

Her other pages say "Sending: checked 40 s ago" and "Not sent yet — test mode" (web/words.py);
this page says what whoever runs the server needs: how mail goes out and the variable that sets
it, where files live, the sending clock and processes, and each problem in the server's words.
"""

from __future__ import annotations

from typing import NamedTuple

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response

from newsletter.core.config import ENV_PREFIX, Settings
from newsletter.web.admin.common import page, require_admin, settings_of
from newsletter.web.public.health import dashboard_context
from newsletter.web.words import ABOUT_PATH, WORDS

protected = APIRouter(prefix="/admin", dependencies=[Depends(require_admin)])


class Fact(NamedTuple):
    label: str
    value: str
    variable: str  # the NEWSLETTER_* variable that sets it


def _database_kind(url: str) -> str:
    return "PostgreSQL" if url.startswith("postgresql") else "SQLite"


# label, the setting's field, how its value is shown (never a secret: only whether one is set).
FACTS: tuple[tuple[str, str, object], ...] = (
    ("How mail goes out", "mail_backend", str),
    ("SendGrid API key", "sendgrid_api_key", lambda v: "set" if v else "not set"),
    ("SendGrid signing key (event webhook)", "sendgrid_webhook_public_key",
     lambda v: "set" if v else "not set"),
    ("Unsigned provider events accepted", "webhook_allow_unsigned",
     lambda v: "yes (local trial only)" if v else "no"),
    ("SMTP server", "smtp_url", lambda v: "set" if v else "not set"),
    ("Emails kept in test mode (outbox)", "outbox_dir", str),
    ("Series files", "schedules_dir", str),
    ("Email templates", "templates_dir", str),
    ("Database", "database_url", _database_kind),
    ("Public address", "public_url", str),
    ("Practice time zone", "default_timezone", str),
)  # fmt: skip


def facts(settings: Settings) -> list[Fact]:
    shown = []
    for label, field, show in FACTS:
        value = getattr(settings, field)
        shown.append(Fact(label, show(value), ENV_PREFIX + field.upper()))  # type: ignore[operator]
    return shown


@protected.get(
    ABOUT_PATH.removeprefix("/admin"), response_class=HTMLResponse, include_in_schema=False
)
def about(request: Request) -> Response:
    settings = settings_of(request)
    health = dashboard_context(request)
    status = health["health"]
    reading = getattr(status, "reading", None)
    return page(
        request,
        "admin/about.html",
        {
            "nav": "about",
            "facts": facts(settings),
            "webhook_url": settings.public_url.rstrip("/") + "/webhooks/sendgrid",
            "problems": getattr(status, "problems", []),
            "tick_age": health["tick_age"],
            "workers": len(reading.workers) if reading is not None else None,
            "words": WORDS,
        },
    )
