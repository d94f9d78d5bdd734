"""Subscriber pages: list and search, add, one person's page, unsubscribe, resend, new links,
erase, export; the reader tools (edit, move, skip, send again: services.reader_tools)."""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, Response

from newsletter.core.timing import utcnow
from newsletter.core.vocabulary import ACTIVE, ENROLLED_ACTIVE, PENDING, QUEUED, SUBSCRIBER_STATUSES
from newsletter.services import mailing, people, profile, reader_tools, roster, series_admin
from newsletter.services.signup import InvalidInput
from newsletter.store.db import Session, session_scope
from newsletter.web.admin.common import (
    Db,
    SubscriberId,
    form_of,
    page,
    redirect,
    require_admin,
    require_owner,
    settings_of,
)

PAGE_SIZE = 50
protected = APIRouter(prefix="/admin", dependencies=[Depends(require_admin)])


def _subscribers(
    request: Request, db: Session, q: str, status: str | None, number: int
) -> Response:
    if status not in SUBSCRIBER_STATUSES:
        status = None
    number = max(number, 1)
    found, total = roster.search(
        db, q, status=status, limit=PAGE_SIZE, offset=(number - 1) * PAGE_SIZE
    )
    return page(
        request,
        "admin/subscribers.html",
        {
            "nav": "subscribers",
            "q": q,
            "status": status or "",
            "statuses": SUBSCRIBER_STATUSES,
            "found": found,
            "total": total,
            "page": number,
            "pages": max((total + PAGE_SIZE - 1) // PAGE_SIZE, 1),
        },
    )


def _page_number(raw: object) -> int:
    text = str(raw or "1")
    return int(text) if text.isdecimal() and len(text) < 7 else 1


@protected.get("/subscribers", response_class=HTMLResponse, include_in_schema=False)
def subscribers_page(request: Request, db: Db) -> Response:
    """Everyone, or one status; a search by name or address is a POST (no addresses in URLs)."""
    status = request.query_params.get("status") or None
    return _subscribers(request, db, "", status, _page_number(request.query_params.get("page")))


@protected.post("/subscribers/search", response_class=HTMLResponse, include_in_schema=False)
async def subscribers_search(request: Request) -> Response:
    form = await form_of(request)
    q = str(form.get("q") or "")[:200]
    status = str(form.get("status") or "") or None
    with session_scope(settings_of(request).database_url) as db:
        return _subscribers(request, db, q, status, _page_number(form.get("page")))


@protected.get("/subscribers/new", response_class=HTMLResponse, include_in_schema=False)
def subscriber_new(request: Request, db: Db) -> Response:
    return _new_form(request, db, {}, None)


def _new_form(request: Request, db: Session, values: dict[str, Any], error: str | None) -> Response:
    series = series_admin.choices(db)
    return page(
        request,
        "admin/subscriber_new.html",
        {"nav": "subscribers", "values": values, "error": error, "series": series},
        400 if error else 200,
    )


@protected.post("/subscribers", include_in_schema=False)
async def subscriber_add(request: Request) -> Response:
    form = await form_of(request)
    settings = settings_of(request)
    values = {
        "email": str(form.get("email") or ""),
        "name": str(form.get("name") or ""),
        "timezone": str(form.get("timezone") or ""),
        "series": [str(s) for s in form.getlist("series")],
        "consented": form.get("consented") == "yes",
    }
    try:
        sub_id = roster.add_subscriber(
            settings,
            email=values["email"],
            name=values["name"],
            timezone=values["timezone"],
            series=values["series"],
            confirmed=values["consented"],
        )
    except roster.RosterError as exc:
        with session_scope(settings.database_url) as db:
            return _new_form(request, db, values, str(exc))
    note = (
        "Added as active (consent given elsewhere)."
        if values["consented"]
        else "Added as pending; the confirmation email has gone out."
    )
    return redirect(request, f"/admin/subscribers/{sub_id}", note)


def _found(value: Any) -> Any:
    """`value` from a service asked about one person; a 404 when it said nobody (None)."""
    if value is None:
        raise HTTPException(404, "no such subscriber")
    return value


@protected.get("/subscribers/{subscriber_id}", response_class=HTMLResponse, include_in_schema=False)
def subscriber_page(request: Request, subscriber_id: SubscriberId, db: Db) -> Response:
    shown: profile.Profile = _found(profile.profile(db, subscriber_id, utcnow()))
    tools = reader_tools.tools(db, subscriber_id)
    return page(
        request,
        "admin/subscriber.html",
        {
            "nav": "subscribers",
            "sub": shown.person,
            "queue": shown.queue,
            "deliveries": shown.deliveries,
            "events": shown.events,
            "paused": shown.paused,
            "next_send": shown.next_send,
            "ACTIVE": ACTIVE,
            "PENDING": PENDING,
            "ENROLLED_ACTIVE": ENROLLED_ACTIVE,
            "QUEUED": QUEUED,
            "tools": tools,
            "form_key": secrets.token_urlsafe(12),  # one send-again per drawn form
        },
    )


def _back(subscriber_id: int) -> str:
    return f"/admin/subscribers/{subscriber_id}"


def _part(raw: object) -> int:
    text = str(raw or "").strip()
    return int(text) if text.isdecimal() and len(text) < 6 else 0


@protected.post("/subscribers/{subscriber_id}/edit", include_in_schema=False)
async def subscriber_edit(request: Request, subscriber_id: SubscriberId) -> Response:
    """Name, zone, cadence and pause, by the preference rule (services.reader_tools.edit)."""
    form = await form_of(request)
    values = reader_tools.Edit(
        name=str(form.get("name") or "")[:200],
        timezone=str(form.get("timezone") or "")[:100],
        cadence=str(form.get("cadence") or ""),
        paused_until=str(form.get("paused_until") or "")[:20],
    )
    try:
        said = reader_tools.edit(settings_of(request), subscriber_id, values, utcnow())
    except LookupError:
        raise HTTPException(404, "no such subscriber") from None
    except InvalidInput as exc:
        return redirect(request, _back(subscriber_id), " ".join(exc.errors.values()), "error")
    return redirect(request, _back(subscriber_id), said)


@protected.post("/subscribers/{subscriber_id}/move", include_in_schema=False)
async def subscriber_move(request: Request, subscriber_id: SubscriberId) -> Response:
    form = await form_of(request)
    slug, part = str(form.get("series") or "")[:100], _part(form.get("part"))
    return _tool(
        request,
        subscriber_id,
        lambda: reader_tools.move(settings_of(request), subscriber_id, slug, part, utcnow()),
    )


@protected.post("/subscribers/{subscriber_id}/skip", include_in_schema=False)
async def subscriber_skip(request: Request, subscriber_id: SubscriberId) -> Response:
    await form_of(request)
    return _tool(
        request,
        subscriber_id,
        lambda: reader_tools.skip(settings_of(request), subscriber_id, utcnow()),
    )


@protected.post("/subscribers/{subscriber_id}/send-again", include_in_schema=False)
async def subscriber_send_again(request: Request, subscriber_id: SubscriberId) -> Response:
    """One part she had, sent again once per form key (a double click sends one email)."""
    form = await form_of(request)
    slug, _, number = str(form.get("part") or "").partition("/")
    key = str(form.get("key") or "")
    try:
        said, ok = await run_in_threadpool(  # a provider call: never on the event loop
            reader_tools.send_again,
            settings_of(request),
            subscriber_id,
            slug[:100],
            _part(number),
            key,
            utcnow(),
        )
    except LookupError:
        raise HTTPException(404, "no such subscriber") from None
    except reader_tools.ToolError as exc:
        return redirect(request, _back(subscriber_id), str(exc), "error")
    return redirect(request, _back(subscriber_id), said, "ok" if ok else "error")


def _tool(request: Request, subscriber_id: int, act: Callable[[], str]) -> Response:
    try:
        said = act()
    except LookupError:
        raise HTTPException(404, "no such subscriber") from None
    except reader_tools.ToolError as exc:
        return redirect(request, _back(subscriber_id), str(exc), "error")
    return redirect(request, _back(subscriber_id), said)


@protected.post("/subscribers/{subscriber_id}/unsubscribe", include_in_schema=False)
async def subscriber_unsubscribe(request: Request, subscriber_id: SubscriberId) -> Response:
    await form_of(request)
    settings = settings_of(request)
    with session_scope(settings.database_url) as db:
        _found(roster.unsubscribe_person(settings, db, subscriber_id))
    return redirect(
        request, f"/admin/subscribers/{subscriber_id}", "Unsubscribed: nothing more goes to them."
    )


@protected.post("/subscribers/{subscriber_id}/rotate-links", include_in_schema=False)
async def subscriber_rotate_links(request: Request, subscriber_id: SubscriberId) -> Response:
    """New preference/unsubscribe links for this person: those in emails already sent stop."""
    await form_of(request)
    settings = settings_of(request)
    with session_scope(settings.database_url) as db:
        _found(roster.new_links(db, subscriber_id) or None)
    return redirect(
        request,
        f"/admin/subscribers/{subscriber_id}",
        "Their old links no longer work; the next emails carry new ones.",
    )


@protected.post("/subscribers/{subscriber_id}/resend", include_in_schema=False)
async def subscriber_resend(request: Request, subscriber_id: SubscriberId) -> Response:
    await form_of(request)
    settings = settings_of(request)
    with session_scope(settings.database_url) as db:
        pending = _found(people.person(db, subscriber_id)).status == PENDING
    if not pending:
        return redirect(
            request,
            f"/admin/subscribers/{subscriber_id}",
            "Only pending people get a confirmation email.",
            "error",
        )
    mailed = await run_in_threadpool(mailing.send_confirmations, settings, [subscriber_id])
    if mailed.halted is not None:
        said = f"Not sent: sending is halted ({mailed.halted})."
    else:
        said = (
            "Confirmation email sent again."
            if mailed.sent
            else "The confirmation email could not be sent."
        )
    return redirect(
        request, f"/admin/subscribers/{subscriber_id}", said, "ok" if mailed.sent else "error"
    )


@protected.post(
    "/subscribers/{subscriber_id}/erase",
    include_in_schema=False,
    dependencies=[Depends(require_owner)],
)
async def subscriber_erase(request: Request, subscriber_id: SubscriberId) -> Response:
    form = await form_of(request)
    settings = settings_of(request)
    if str(form.get("confirm") or "").strip().lower() != "erase":
        return redirect(
            request,
            f"/admin/subscribers/{subscriber_id}",
            "Nothing erased: type ERASE in the box to confirm.",
            "error",
        )
    with session_scope(settings.database_url) as db:
        ids = _found(roster.erase_person(settings, db, subscriber_id))
    roster.drop_from_queue(settings, ids)
    return redirect(
        request,
        "/admin/subscribers",
        "Erased. Their details are gone; the address is blocked from being imported again.",
    )


@protected.get(
    "/subscribers/{subscriber_id}/export.json",
    include_in_schema=False,
    dependencies=[Depends(require_owner)],
)
def subscriber_export(request: Request, subscriber_id: SubscriberId, db: Db) -> Response:
    record = _found(roster.record(db, subscriber_id))
    return Response(
        json.dumps(record, ensure_ascii=False, indent=2),
        media_type="application/json",
        headers={
            "content-disposition": f'attachment; filename="subscriber-{subscriber_id}.json"',
            "cache-control": "no-store",
        },
    )
