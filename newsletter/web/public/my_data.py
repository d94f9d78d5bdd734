"""Public page: "send me my data" from the preference centre, emailed to the reader's own address.

The data (services.export.subscriber_record: profile, consent record, series, every delivery,
provider events) goes by email, never onto the page: the preference link rides in every
article and may be forwarded, so the page shows nothing personal and only the subscribed
address receives it, and only while active or unsubscribed (mailing.mail_on_request: never to a
complained or bounced address; the page is the same). One such email per address per 10 minutes
(3 a day).
"""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from starlette.background import BackgroundTask
from starlette.responses import Response

from newsletter.core.config import Settings
from newsletter.mail.render import Renderer
from newsletter.services import export, mailing
from newsletter.services.people import Person
from newsletter.store.db import session_scope
from newsletter.web.csrf import verify_csrf
from newsletter.web.pages import render, settings_of
from newsletter.web.public.common import (
    LinkProblem,
    address_allowed,
    link_problem_page,
    read_public_id,
    subscriber_for,
    token_for,
)

log = logging.getLogger(__name__)
router = APIRouter()

Record = dict[str, Any]


@router.post("/preferences/{token}/data")
def send_my_data(
    request: Request, token: str, csrf_token: Annotated[str | None, Form()] = None
) -> Response:
    settings = settings_of(request)
    verify_csrf(request, csrf_token)
    try:
        public_id = read_public_id(request, "preferences", token)
        with session_scope(settings.database_url) as session:
            subscriber = subscriber_for(session, public_id)
            record = export.subscriber_record(session, subscriber)
            back = token_for(request, "preferences", subscriber)
    except LinkProblem as problem:
        return link_problem_page(request, problem)
    response = render(request, "my_data_sent.html", {"preferences_token": back}, no_store=True)
    response.background = BackgroundTask(_send, request, settings, subscriber, record)
    return response


def _send(request: Request, settings: Settings, subscriber: Person, record: Record) -> None:
    # "data:": a counter of its own, apart from confirmations
    if not address_allowed(request, settings, "data:" + subscriber.email_key):
        log.info("data email not sent: within the per-address limit or Redis down")
        return
    if not mailing.mail_on_request(subscriber):  # counted above all the same: same work
        log.info("data email not sent: the reader's status is %s", subscriber.status)
        return
    try:
        message = Renderer(settings).your_data(record)
        mailing.deliver(settings, message, [mailing.personal(settings, subscriber, message.kind)])
    except Exception:
        log.exception("data email could not be sent")
