"""The admin's broadcasts page: write a one-off letter in Markdown, preview it, choose readers
and time, schedule it; the list of broadcasts with cancel."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import HTMLResponse, Response

from newsletter.content.letter import letter
from newsletter.content.series import ContentError
from newsletter.core.config import Settings
from newsletter.core.timing import utcnow
from newsletter.core.vocabulary import BROADCAST_KIND
from newsletter.mail import render
from newsletter.services import broadcasts, series_admin
from newsletter.store.db import session_scope
from newsletter.web.admin.common import form_of, page, redirect, require_admin, settings_of

protected = APIRouter(prefix="/admin", dependencies=[Depends(require_admin)])

# The preview sits in a sandboxed srcdoc frame, which inherits this page's policy: the email's
# inline styles need 'unsafe-inline' for styles (never for scripts) on this one response.
PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' https: data:; frame-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
FIELDS = (
    "title", "summary", "body_md", "audience", "series", "joined_before", "when", "on_date",
    "moment", "archive",
)  # fmt: skip


def _series_choices(settings: Settings) -> list[series_admin.Choice]:
    with session_scope(settings.database_url) as session:
        return series_admin.choices(session, live_only=True)


def _show(
    request: Request,
    values: dict[str, Any],
    *,
    error: str | None = None,
    preview: dict[str, str] | None = None,
) -> Response:
    settings = settings_of(request)
    response = page(
        request,
        "admin/broadcasts.html",
        {
            "nav": "broadcasts",
            "values": values,
            "error": error,
            "preview": preview,
            "choices": _series_choices(settings),
            "rows": broadcasts.list_all(settings),
        },
        400 if error else 200,
    )
    response.headers["content-security-policy"] = PAGE_CSP
    return response


def _audience(values: dict[str, Any]) -> str:
    kind = values.get("audience") or "all"
    if kind == "series":
        return "series:" + ",".join(values.get("series") or [])
    if kind == "joined":
        return f"joined-before:{values.get('joined_before') or ''}"
    return "all"


def _when(values: dict[str, Any]) -> str:
    kind = values.get("when") or "now"
    if kind == "date":
        return str(values.get("on_date") or "")
    if kind == "moment":
        return str(values.get("moment") or "")
    return "now"


def _preview(settings: Settings, values: dict[str, Any]) -> dict[str, str]:
    part = letter(values["title"], values["summary"], values["body_md"])
    fake = SimpleNamespace(
        slug="letter-preview", title=part.title, kind=BROADCAST_KIND, in_archive=False
    )
    message = render.Renderer(settings).article(fake, part, 1)
    base = settings.public_url.rstrip("/")
    personal = render.personal_values(
        name="Sample Reader",
        unsubscribe_url=f"{base}/unsubscribe/sample-link",
        preferences_url=f"{base}/preferences/sample-link",
    )
    return {
        "subject": render.personalise(message.subject, personal),
        "html": render.personalise(message.html, personal),
        "text": render.personalise(message.text, personal),
    }


@protected.get("/broadcasts", response_class=HTMLResponse, include_in_schema=False)
def broadcasts_page(request: Request) -> Response:
    return _show(request, {"audience": "all", "when": "now"})


@protected.post("/broadcasts", include_in_schema=False)
async def broadcasts_submit(request: Request) -> Response:
    form = await form_of(request)
    settings = settings_of(request)
    values: dict[str, Any] = {k: str(form.get(k) or "") for k in FIELDS}
    values["series"] = [str(s) for s in form.getlist("series")]
    values["archive"] = form.get("archive") == "on"
    now = utcnow()
    try:
        if form.get("action") == "preview":
            return _show(request, values, preview=_preview(settings, values))
        info = broadcasts.create(
            settings,
            letter(values["title"], values["summary"], values["body_md"]),
            broadcasts.parse_audience(_audience(values)),
            broadcasts.parse_when(_when(values), settings, now),
            in_archive=bool(values["archive"]),
            now=now,
        )
    except ContentError as exc:
        return _show(request, values, error="; ".join(exc.errors))
    except broadcasts.BroadcastError as exc:
        return _show(request, values, error=str(exc))
    readers = "reader" if info.recipients == 1 else "readers"
    return redirect(
        request,
        "/admin/broadcasts",
        f"“{info.title}” is scheduled for {info.recipients} {readers}: {info.when}.",
    )


@protected.post("/broadcasts/{broadcast_id}/cancel", include_in_schema=False)
async def broadcast_cancel(
    request: Request, broadcast_id: int = Path(ge=1, le=2**31 - 1)
) -> Response:
    await form_of(request)
    info = broadcasts.cancel(settings_of(request), broadcast_id, utcnow())
    if info is None:
        return redirect(request, "/admin/broadcasts", "No such broadcast.", "error")
    return redirect(
        request,
        "/admin/broadcasts",
        f"“{info.title}” is cancelled: {info.sent} had it already, nobody else will get it.",
    )
