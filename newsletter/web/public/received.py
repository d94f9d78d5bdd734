"""Public page: the articles a reader has received, and "send me this one again".

A copy on request, outside the ledger: the ledger keeps its one row per part (exactly once for
the scheduled send), and the copy carries no delivery id, series or part for the provider's
events. Only parts the ledger says were sent to this reader can be asked for; one copy per
address per 10 minutes (3 a day), only to an active or unsubscribed reader
(mailing.mail_on_request), and the page is the same whether or not a copy went out.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from sqlalchemy import func, select
from starlette.background import BackgroundTask
from starlette.responses import Response

from newsletter.core.config import Settings
from newsletter.mail.render import Renderer
from newsletter.services import mailing
from newsletter.store import ledger
from newsletter.store import series as series_store
from newsletter.store.db import session_scope
from newsletter.store.models import Part, Series, Subscriber
from newsletter.web.csrf import verify_csrf
from newsletter.web.pages import render, settings_of
from newsletter.web.public.common import (
    LinkProblem,
    address_allowed,
    link_problem_page,
    read_public_id,
    subscriber_for,
)

log = logging.getLogger(__name__)
router = APIRouter()

COPY = "copy"  # message kind: a copy of a received article (no series/part custom_args)


def _received(session: Any, subscriber: Subscriber) -> list[dict[str, Any]]:
    rows = ledger.received_parts(session, subscriber.id)
    return [
        {"key": f"{slug}/{n}", "series": st, "number": n, "title": pt, "sent_at": at}
        for slug, st, n, pt, at in rows
    ]


@router.get("/preferences/{token}/received")
def received_page(request: Request, token: str) -> Response:
    settings = settings_of(request)
    try:
        public_id = read_public_id(request, "preferences", token)
        with session_scope(settings.database_url) as session:
            items = _received(session, subscriber_for(session, public_id))
    except LinkProblem as problem:
        return link_problem_page(request, problem)
    context = {"items": items, "token": token, "sent": False}
    return render(request, "received.html", context, no_store=True)


@router.post("/preferences/{token}/received")
def send_again(
    request: Request,
    token: str,
    part: Annotated[str, Form(max_length=200)] = "",
    csrf_token: Annotated[str | None, Form()] = None,
) -> Response:
    settings = settings_of(request)
    verify_csrf(request, csrf_token)
    try:
        public_id = read_public_id(request, "preferences", token)
        with session_scope(settings.database_url) as session:
            subscriber = subscriber_for(session, public_id)
            items = _received(session, subscriber)
            wanted = next((i for i in items if i["key"] == part), None)
            found = _part(session, part) if wanted is not None else None
            session.expunge(subscriber)
    except LinkProblem as problem:
        return link_problem_page(request, problem)
    context = {"items": items, "token": token, "sent": wanted is not None}
    response = render(request, "received.html", context, 200 if wanted else 400, no_store=True)
    if found is not None:
        response.background = BackgroundTask(_send, request, settings, subscriber, *found)
    return response


def _part(session: Any, key: str) -> tuple[Series, Part, int] | None:
    slug, _, number = key.rpartition("/")
    series = series_store.by_slug(session, slug)
    if series is None or not number.isdecimal():
        return None
    part = session.scalar(
        select(Part).where(Part.series_id == series.id, Part.number == int(number))
    )
    count = session.scalar(select(func.count()).where(Part.series_id == series.id))
    if part is None:
        return None
    session.expunge(series)
    session.expunge(part)
    return series, part, int(count or 1)


def _send(
    request: Request, settings: Settings, subscriber: Subscriber, series: Series, part: Part,
    count: int,
) -> None:  # fmt: skip
    if not address_allowed(request, settings, "again:" + subscriber.email_key):
        log.info("copy not sent: within the per-address limit or Redis down")
        return
    if not mailing.mail_on_request(subscriber):  # counted above all the same: same work
        log.info("copy not sent: the reader's status is %s", subscriber.status)
        return
    try:
        article = Renderer(settings).article(series, part, count)
        copy = dataclasses.replace(article, kind=COPY, series=None, part=None)
        mailing.deliver(settings, copy, [mailing.personal(settings, subscriber, COPY)])
    except Exception:
        log.exception("copy could not be sent")
