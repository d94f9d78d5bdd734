"""Practice settings (/admin/settings): the practice's details and signup wording, saved in the database.

The fields, their checks and the overlay live in newsletter/store/practice.py; this page shows
them, marks the ones an environment variable fixes (read-only here), and saves the rest.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response

from newsletter.core.config import Settings
from newsletter.store import practice
from newsletter.store.db import session_scope
from newsletter.web.admin.common import Db, form_of, page, redirect, require_admin, settings_of
from newsletter.web.zones import zone_groups

protected = APIRouter(prefix="/admin", dependencies=[Depends(require_admin)])


def _context(
    request: Request, saved: dict[str, str], values: dict[str, str], errors: dict[str, str]
) -> dict[str, Any]:
    server: Settings = request.app.state.settings  # as the server set it, before the overlay
    shown = settings_of(request)
    fixed = practice.fixed_by_environment(server)
    rows = [
        {
            "field": f,
            "fixed": f.name in fixed,
            "value": values.get(f.name, saved.get(f.name, "")),
            # what readers get when the box is left empty
            "default": "" if getattr(server, f.name) is None else str(getattr(server, f.name)),
            "effective": getattr(shown, f.name),
            "error": errors.get(f.name),
        }
        for f in practice.FIELDS
    ]
    return {"nav": "settings", "rows": rows, "errors": errors, "zone_groups": zone_groups()}


@protected.get("/settings", response_class=HTMLResponse, include_in_schema=False)
def settings_page(request: Request, db: Db) -> Response:
    return page(request, "admin/settings.html", _context(request, practice.saved(db), {}, {}))


@protected.post("/settings", include_in_schema=False)
async def settings_save(request: Request) -> Response:
    form = await form_of(request)
    fixed = practice.fixed_by_environment(request.app.state.settings)
    submitted = {
        f.name: str(form.get(f.name) or "")
        for f in practice.FIELDS
        if f.name not in fixed and f.name in form
    }
    clean, errors = practice.check(submitted)
    settings = settings_of(request)
    with session_scope(settings.database_url) as db:
        if errors:
            context = _context(request, practice.saved(db), submitted, errors)
            return page(request, "admin/settings.html", context, 422)
        practice.save(db, clean)
    return redirect(
        request, "/admin/settings", "Saved. Every page and the next email use these details."
    )
