"""API: list, search, create, read, change, unsubscribe, export, erase and import subscribers."""

from __future__ import annotations

import tempfile
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request, Response
from fastapi.concurrency import run_in_threadpool

from newsletter.services import calendar, importing, people, roster
from newsletter.store.db import session_scope
from newsletter.web.api.calendar import ComingSendOut
from newsletter.web.api.common import (
    MAX_IMPORT_BYTES,
    ErrorOut,
    SessionDep,
    SettingsDep,
    SubscriberId,
    TokenFirstRoute,
)
from newsletter.web.api.schemas import (
    ImportOut,
    SearchIn,
    Status,
    SubscriberIn,
    SubscriberOut,
    SubscriberPage,
    SubscriberPatch,
    SubscriberRecord,
)

router = APIRouter(route_class=TokenFirstRoute)  # the token before the body


@router.get("/subscribers", response_model=SubscriberPage, summary="List subscribers, newest first")
def list_subscribers(
    session: SessionDep,
    status: Annotated[Status | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> SubscriberPage:
    page, total = roster.search(session, "", status=status, limit=limit, offset=offset)
    return SubscriberPage(total=total, items=[SubscriberOut.of(s) for s in page])


@router.post(
    "/subscribers/search",
    response_model=SubscriberPage,
    summary="Search by name or address (in the body: addresses never go in URLs or logs)",
)
def search_subscribers(body: SearchIn, session: SessionDep) -> SubscriberPage:
    page, total = roster.search(
        session, body.q, status=body.status, limit=body.limit, offset=body.offset
    )
    return SubscriberPage(total=total, items=[SubscriberOut.of(s) for s in page])


def _found(value: Any) -> Any:
    """`value` from a service asked about one person; a 404 when it said nobody (None)."""
    if value is None:
        raise HTTPException(404, "no subscriber with that id")
    return value


@router.post(
    "/subscribers",
    response_model=SubscriberOut,
    status_code=201,
    summary="Add a subscriber (pending with a confirmation email, or active when confirmed)",
    responses={400: {"model": ErrorOut}, 409: {"model": ErrorOut}},
)
def create_subscriber(body: SubscriberIn, settings: SettingsDep) -> SubscriberOut:
    try:
        sub_id = roster.add_subscriber(
            settings,
            email=body.email,
            name=body.name,
            timezone=body.timezone,
            series=body.series,
            confirmed=body.confirmed,
            method="api",
        )
    except roster.RosterError as exc:
        code = 409 if "already" in str(exc) or "erased" in str(exc) else 400
        raise HTTPException(code, str(exc)) from None
    with session_scope(settings.database_url) as session:
        return SubscriberOut.of(_found(people.person(session, sub_id)))


@router.get(
    "/subscribers/{subscriber_id}",
    response_model=SubscriberOut,
    responses={404: {"model": ErrorOut}},
)
def get_subscriber(subscriber_id: SubscriberId, session: SessionDep) -> SubscriberOut:
    return SubscriberOut.of(_found(people.person(session, subscriber_id)))


@router.get(
    "/subscribers/{subscriber_id}/sends",
    response_model=list[ComingSendOut],
    responses={404: {"model": ErrorOut}},
    summary="The subscriber's coming sends over 12 weeks (the calendar's rule)",
)
def subscriber_sends(subscriber_id: SubscriberId, session: SessionDep) -> list[ComingSendOut]:
    sub = _found(people.person(session, subscriber_id))
    sends = calendar.coming_sends(session, sub, calendar.utcnow(), weeks=calendar.MAX_WEEKS)
    return [ComingSendOut.of(s) for s in sends]


@router.patch(
    "/subscribers/{subscriber_id}",
    response_model=SubscriberOut,
    summary="Change name, time zone, cadence, pause or new-series preference",
    responses={400: {"model": ErrorOut}, 404: {"model": ErrorOut}},
)
def update_subscriber(
    subscriber_id: SubscriberId, body: SubscriberPatch, settings: SettingsDep
) -> SubscriberOut:
    with session_scope(settings.database_url) as session:
        try:
            changed = roster.update_person(
                settings, session, subscriber_id, body.model_dump(exclude_unset=True)
            )
        except roster.RosterError as exc:
            raise HTTPException(400, str(exc)) from None
        out = SubscriberOut.of(_found(changed))
    return out


@router.post(
    "/subscribers/{subscriber_id}/unsubscribe",
    response_model=SubscriberOut,
    summary="Unsubscribe from everything (idempotent)",
    responses={404: {"model": ErrorOut}},
)
def unsubscribe_subscriber(subscriber_id: SubscriberId, settings: SettingsDep) -> SubscriberOut:
    with session_scope(settings.database_url) as session:
        out = SubscriberOut.of(_found(roster.unsubscribe_person(settings, session, subscriber_id)))
    return out


@router.get(
    "/subscribers/{subscriber_id}/export",
    summary="Everything held about one person (access request)",
    response_model=SubscriberRecord,
    responses={404: {"model": ErrorOut}},
)
def export_subscriber(subscriber_id: SubscriberId, session: SessionDep) -> SubscriberRecord:
    record = _found(roster.record(session, subscriber_id))
    return SubscriberRecord.model_validate(record)


@router.delete(
    "/subscribers/{subscriber_id}",
    status_code=204,
    summary="Erase (GDPR): the row goes, the ledger keeps no personal data, re-import is blocked",
    responses={404: {"model": ErrorOut}},
    response_class=Response,
)
def erase_subscriber(subscriber_id: SubscriberId, settings: SettingsDep) -> Response:
    with session_scope(settings.database_url) as session:
        ids = _found(roster.erase_person(settings, session, subscriber_id))
    roster.drop_from_queue(settings, ids)
    return Response(status_code=204)


@router.post(
    "/subscribers/import",
    response_model=ImportOut,
    summary="Import a CSV (email, name, timezone, series); dry_run=true only reports",
    responses={400: {"model": ErrorOut}, 413: {"model": ErrorOut}},
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"text/csv": {"schema": {"type": "string"}}},
        }
    },
)
async def import_subscribers(
    request: Request,
    settings: SettingsDep,
    dry_run: Annotated[bool, Query()] = True,
    confirmed: Annotated[bool, Query()] = False,
) -> ImportOut:
    size = 0
    with tempfile.SpooledTemporaryFile(max_size=1024 * 1024) as spool:
        async for chunk in request.stream():
            size += len(chunk)
            if size > MAX_IMPORT_BYTES:
                raise HTTPException(
                    413, f"the file is larger than {MAX_IMPORT_BYTES // (1024 * 1024)} MiB"
                )
            spool.write(chunk)
        spool.seek(0)
        try:
            report = await run_in_threadpool(
                importing.import_csv,
                settings,
                spool,
                dry_run=dry_run,
                confirmed=confirmed,
            )
        except roster.RosterError as exc:
            raise HTTPException(400, str(exc)) from None
    return ImportOut.model_validate(report.as_dict())
