"""The admin's broadcasts page: write a one-off letter in Markdown, preview it, send a test to
herself, choose readers and time, confirm ("Send to 412 readers on Fri 5 Mar 2027?") and
schedule it; the list of broadcasts, each cancelled after its own confirmation."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Path, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, Response

from newsletter.content.letter import letter
from newsletter.content.series import ContentError
from newsletter.core.config import Settings
from newsletter.core.timing import utcnow
from newsletter.core.vocabulary import BROADCAST_KIND
from newsletter.mail import render
from newsletter.mail.message import Message
from newsletter.services import broadcasts, mailing, series_admin
from newsletter.store.db import session_scope
from newsletter.web import dates, words, zones
from newsletter.web.admin.common import form_of, page, redirect, require_admin, settings_of
from newsletter.web.admin.editor import LIMITS

protected = APIRouter(prefix="/admin", dependencies=[Depends(require_admin)])

# The preview sits in a sandboxed srcdoc frame, which inherits this page's policy: the email's
# inline styles need 'unsafe-inline' for styles (never for scripts) on this one response. The
# live preview (static/editor.js) asks the series editor's preview endpoint: connect-src.
PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' https: data:; frame-src 'self'; connect-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
FIELDS = (
    "title", "summary", "body_md", "audience", "series", "joined_before", "when", "on_date",
    "moment", "archive", "test_to",
)  # fmt: skip
BroadcastId = Annotated[int, Path(ge=1, le=2**31 - 1)]


def _series_choices(settings: Settings) -> list[series_admin.Choice]:
    with session_scope(settings.database_url) as session:
        return series_admin.choices(session, live_only=True)


def _show(
    request: Request,
    values: dict[str, Any],
    *,
    error: str | None = None,
    preview: dict[str, str] | None = None,
    notice: str | None = None,
) -> Response:
    settings = settings_of(request)
    choices = _series_choices(settings)
    titles = {c.slug: c.title for c in choices}
    local_now = utcnow().astimezone(ZoneInfo(settings.default_timezone))
    response = page(
        request,
        "admin/broadcasts.html",
        {
            "nav": "broadcasts",
            "values": {"test_to": settings.reply_to, **values},
            "error": error,
            "notice": notice,
            "preview": preview,
            "limits": LIMITS,
            "letter": True,
            "choices": choices,
            "rows": [
                _row(r, titles, settings.default_timezone) for r in broadcasts.list_all(settings)
            ],
            "today": local_now.date().isoformat(),
            "now_local": local_now.strftime("%Y-%m-%dT%H:%M"),
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


def _message(settings: Settings, values: dict[str, Any]) -> Message:
    part = letter(values["title"], values["summary"], values["body_md"])
    fake = SimpleNamespace(
        slug="letter-preview", title=part.title, kind=BROADCAST_KIND, in_archive=False
    )
    return render.Renderer(settings).article(fake, part, 1)


def _preview(settings: Settings, values: dict[str, Any]) -> dict[str, str]:
    message = _message(settings, values)
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


def audience_words(text: str, titles: dict[str, str]) -> str:
    """A stored audience ("all", "series:a,b", "joined-before:2027-01-04") in her words."""
    kind, _, rest = text.partition(":")
    if kind == "series":
        return "Readers of " + ", ".join(titles.get(s, s) for s in rest.split(",") if s)
    if kind == "joined-before":
        return f"Readers who joined before {dates.format_day(rest)}"
    return "Every active reader"


def when_words(when: broadcasts.When, zone: str) -> str:
    """When a broadcast goes out, in the one date style: the day, or the moment in her zone."""
    if when.on_date is not None:
        return f"on {dates.format_day(when.on_date)}, at each reader's usual time"
    if when.at is not None:
        return f"on {dates.format_local(when.at, zone)} ({zones.label(zone)} time)"
    return "now"


def _stored_when(text: str) -> broadcasts.When:
    """BroadcastInfo.when ("now", "2027-03-05 at each reader's usual time", an ISO moment)."""
    head = text.split(" ", 1)[0]
    try:
        if len(head) == 10:
            return broadcasts.When("slot", on_date=dt.date.fromisoformat(head))
        return broadcasts.When("moment", at=dt.datetime.fromisoformat(head))
    except ValueError:
        return broadcasts.When("now")


def _row(info: broadcasts.BroadcastInfo, titles: dict[str, str], zone: str) -> dict[str, Any]:
    return {
        **info.__dict__,
        "audience": audience_words(info.audience, titles),
        "when": when_words(_stored_when(info.when), zone),
    }


@protected.get("/broadcasts", response_class=HTMLResponse, include_in_schema=False)
def broadcasts_page(request: Request) -> Response:
    return _show(request, {"audience": "all", "when": "now"})


def _test_send(request: Request, values: dict[str, Any]) -> Response:
    settings = settings_of(request)
    result = mailing.send_test(settings, values["test_to"], _message(settings, values))
    if result.ok:
        return _show(request, values, notice=words.test_sent(result.backend))
    return _show(request, values, error=words.test_failed(result.status, result.detail))


def _confirm(request: Request, values: dict[str, Any], now: dt.datetime) -> Response:
    """ "Send to 412 readers on Fri 5 Mar 2027?": nothing is stored until she says yes."""
    settings = settings_of(request)
    audience = broadcasts.parse_audience(_audience(values))
    when = broadcasts.parse_when(_when(values), settings, now)
    part = letter(values["title"], values["summary"], values["body_md"])  # ContentError
    broadcasts.check_letter(part.title, part.body_md)
    count = broadcasts.audience_count(settings, audience)
    titles = {c.slug: c.title for c in _series_choices(settings)}
    hidden = [(k, v) for k, v in values.items() if k not in ("series", "archive")]
    hidden += [("series", s) for s in values["series"]]
    if values["archive"]:
        hidden.append(("archive", "on"))
    return page(
        request,
        "admin/broadcast_confirm.html",
        {
            "nav": "broadcasts",
            "question": f"Send “{' '.join(values['title'].split())}” to "
            f"{words.plural(count, 'reader')} {when_words(when, settings.default_timezone)}?",
            "audience": audience_words(audience.text(), titles),
            "count": count,
            "hidden": hidden,
        },
    )


@protected.post("/broadcasts", include_in_schema=False)
async def broadcasts_submit(request: Request) -> Response:
    form = await form_of(request)
    values: dict[str, Any] = {k: str(form.get(k) or "") for k in FIELDS}
    values["series"] = [str(s) for s in form.getlist("series")]
    values["archive"] = form.get("archive") == "on"
    action = str(form.get("action") or "schedule")
    # rendering, a test email's provider call, a broadcast's readers claimed: off the event loop
    return await run_in_threadpool(_submit, request, values, action, utcnow())


def _submit(request: Request, values: dict[str, Any], action: str, now: dt.datetime) -> Response:
    settings = settings_of(request)
    try:
        if action == "preview":
            return _show(request, values, preview=_preview(settings, values))
        if action == "test":
            return _test_send(request, values)
        if action == "schedule":
            return _confirm(request, values, now)
        if action != "confirm":  # "change it": back to the form, as written
            return _show(request, values)
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
    return redirect(
        request,
        "/admin/broadcasts",
        f"“{info.title}” is scheduled for {words.plural(info.recipients, 'reader')}, "
        f"{when_words(_stored_when(info.when), settings.default_timezone)}.",
    )


@protected.get(
    "/broadcasts/{broadcast_id}/cancel", response_class=HTMLResponse, include_in_schema=False
)
def broadcast_cancel_page(request: Request, broadcast_id: BroadcastId) -> Response:
    """ "Cancel “Closed on Friday”? 412 readers are still waiting for it.": asked first."""
    settings = settings_of(request)
    info = broadcasts.get(settings, broadcast_id)
    if info is None or info.state not in ("scheduled", "sending"):
        return redirect(request, "/admin/broadcasts", "That broadcast can't be cancelled now.")
    when = when_words(_stored_when(info.when), settings.default_timezone)
    return page(
        request,
        "admin/broadcast_cancel.html",
        {
            "nav": "broadcasts",
            "info": info,
            "question": f"Cancel “{info.title}”, due {when}?",
            "waiting": words.plural(info.waiting, "reader"),
            "sent": words.plural(info.sent, "reader"),
        },
    )


@protected.post("/broadcasts/{broadcast_id}/cancel", include_in_schema=False)
async def broadcast_cancel(request: Request, broadcast_id: BroadcastId) -> Response:
    await form_of(request)
    info = await run_in_threadpool(broadcasts.cancel, settings_of(request), broadcast_id, utcnow())
    if info is None:
        return redirect(request, "/admin/broadcasts", "No such broadcast.", "error")
    return redirect(
        request,
        "/admin/broadcasts",
        f"“{info.title}” is cancelled: {info.sent} had it already, nobody else will get it.",
    )
