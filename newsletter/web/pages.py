"""Jinja environment for web pages (public and admin): autoescaped, shared context, one render call."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.templating import Jinja2Templates
from starlette.responses import HTMLResponse

from newsletter.core.config import Settings
from newsletter.store.practice import effective_settings
from newsletter.web import dates, words, zones
from newsletter.web.csrf import csrf_token

TEMPLATES_DIR = Path(__file__).parent / "templates"
STATIC_DIR = Path(__file__).parent / "static"

templates = Jinja2Templates(directory=str(TEMPLATES_DIR))
templates.env.autoescape = True
templates.env.trim_blocks = True
templates.env.lstrip_blocks = True
# One date style on every page ("Tue 5 Jan 2027"), one time-zone menu.
templates.env.filters["day"] = dates.format_day
templates.env.filters["local"] = dates.format_local
templates.env.filters["clock"] = dates.format_clock
templates.env.filters["zone_name"] = zones.label
templates.env.filters["zone"] = zones.with_id
templates.env.filters["mail_way"] = words.mail_way
templates.env.filters["kept_mail"] = words.kept_mail
templates.env.globals["zone_groups"] = zones.zone_groups
templates.env.globals["zone_in_menu"] = zones.in_menu


def settings_of(request: Request) -> Settings:
    """This request's effective settings: the app's (the environment's) with the practice
    details saved in the admin laid over them (environment wins; store.practice)."""
    return effective_settings(request.app.state.settings)


def render(
    request: Request,
    name: str,
    context: dict[str, Any] | None = None,
    status_code: int = 200,
    *,
    no_store: bool = False,
) -> HTMLResponse:
    """Render a page; every page gets `settings`, `practice` and `csrf_token`."""
    settings = settings_of(request)
    values: dict[str, Any] = {
        "settings": settings,
        "practice": settings.practice,
        "csrf_token": csrf_token(request),
    }
    values.update(context or {})
    response = templates.TemplateResponse(request, name, values, status_code=status_code)
    if no_store:
        response.headers["Cache-Control"] = "no-store"
    return response
