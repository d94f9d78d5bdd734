"""Routes: the JSON API under /api/v1 (bearer token), described exactly by /openapi.json."""

from __future__ import annotations

import datetime as dt
import tempfile
from collections.abc import Iterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from newsletter.core.config import Settings
from newsletter.core.vocabulary import WEEKDAYS
from newsletter.services import auth, export, importing, roster, series_admin
from newsletter.store import stats
from newsletter.store.db import session_scope
from newsletter.store.models import Delivery, Part, Series, Subscriber, utcnow

MAX_IMPORT_BYTES = 50 * 1024 * 1024
SLUG = r"^[A-Za-z0-9][A-Za-z0-9_-]*$"
DAYS = WEEKDAYS

bearer = HTTPBearer(
    auto_error=False, description="An API token from `newsletter admin create-token NAME`."
)


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_session(settings: Annotated[Settings, Depends(get_settings)]) -> Iterator[Session]:
    with session_scope(settings.database_url) as session:
        yield session


def require_token(
    settings: Annotated[Settings, Depends(get_settings)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> str:
    """The token's name; 401 without a known bearer token."""
    if credentials is not None and credentials.scheme.lower() == "bearer":
        with session_scope(settings.database_url) as session:
            row = auth.check_token(session, credentials.credentials)
            if row is not None:
                return row.name
    raise HTTPException(
        401, "a valid API token is needed (Authorization: Bearer …)", {"WWW-Authenticate": "Bearer"}
    )


class ErrorOut(BaseModel):
    detail: str


ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorOut, "description": "No valid API token"},
}
router = APIRouter(
    prefix="/api/v1", tags=["api"], dependencies=[Depends(require_token)], responses=ERRORS
)

SessionDep = Annotated[Session, Depends(get_session)]
SettingsDep = Annotated[Settings, Depends(get_settings)]


# --- models --------------------------------------------------------------------------------


class PartOut(BaseModel):
    number: int
    title: str
    summary: str
    first_sent_at: dt.datetime | None
    sent: int = Field(description="How many people have been sent this part")
    waiting: int = Field(
        description="Active subscribers whose next part in this series is this one"
    )


class SeriesOut(BaseModel):
    slug: str
    title: str
    description: str
    state: Literal["draft", "live", "paused"]
    send_day: Literal["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
    send_time: str
    cadence: str
    queued_at: dt.datetime | None
    finished: int = Field(description="Active subscribers who have had every part")
    parts: list[PartOut]


class QueueIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    start: dt.date | None = Field(None, description="Nobody gets the series before this date")


class QueueOut(BaseModel):
    slug: str
    count: int = Field(description="Subscribers the series will reach")
    first_date: dt.date | None


class SubscriberOut(BaseModel):
    id: int
    email: str
    name: str | None
    timezone: str
    status: Literal["pending", "active", "unsubscribed", "bounced", "complained", "erased"]
    cadence: Literal["weekly", "fortnightly"]
    paused_until: dt.date | None
    takes_new_series: bool
    consent_method: str | None
    consent_at: dt.datetime | None
    confirmed_at: dt.datetime | None
    unsubscribed_at: dt.datetime | None
    created_at: dt.datetime

    @classmethod
    def of(cls, sub: Subscriber) -> SubscriberOut:
        return cls(
            id=sub.id,
            email=sub.email,
            name=sub.name,
            timezone=sub.timezone,
            status=sub.status,
            cadence=sub.cadence,
            paused_until=sub.paused_until,
            takes_new_series=sub.takes_new_series,
            consent_method=sub.consent_method,
            consent_at=sub.consent_at,
            confirmed_at=sub.confirmed_at,
            unsubscribed_at=sub.unsubscribed_at,
            created_at=sub.created_at,
        )


class SubscriberPage(BaseModel):
    total: int
    items: list[SubscriberOut]


class SubscriberIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    email: str = Field(min_length=3, max_length=254, pattern=r"^[^@\s]+@[^@\s]+$")
    name: str | None = Field(None, max_length=100)
    timezone: str | None = Field(None, max_length=64, description="IANA zone; default if empty")
    series: list[Annotated[str, Field(max_length=100)]] = Field(
        default_factory=list, max_length=50, description="Series slugs; empty: every series"
    )
    confirmed: bool = Field(
        False, description="Consent was given elsewhere: active at once, no confirmation email"
    )


class SubscriberPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(None, max_length=100)
    timezone: str | None = Field(None, max_length=64)
    cadence: Literal["weekly", "fortnightly"] | None = None
    paused_until: dt.date | None = None
    takes_new_series: bool | None = None


class RecordSubscriber(BaseModel):
    email: str
    name: str | None
    timezone: str
    status: str
    cadence: str
    paused_until: str | None
    takes_new_series: bool
    created_at: str | None
    confirmed_at: str | None
    unsubscribed_at: str | None


class RecordConsent(BaseModel):
    method: str | None
    at: str | None
    ip: str | None
    form: str | None
    wording: str | None


class RecordEnrollment(BaseModel):
    series: str
    title: str
    position: int
    state: str
    next_part: int
    next_due_at: str | None
    not_before: str | None


class RecordDelivery(BaseModel):
    id: int
    series: str
    part: int
    status: str
    scheduled_for: str | None
    sent_at: str | None
    delivered_at: str | None
    attempts: int
    last_error: str | None


class RecordEvent(BaseModel):
    provider: str
    type: str
    occurred_at: str | None
    delivery_id: int | None
    detail: str | None


class SubscriberRecord(BaseModel):
    """Everything held about one person (times as ISO-8601 text)."""

    subscriber: RecordSubscriber
    consent: RecordConsent
    enrollments: list[RecordEnrollment]
    deliveries: list[RecordDelivery]
    events: list[RecordEvent]


class ProblemOut(BaseModel):
    line: int
    reason: str


class ImportOut(BaseModel):
    dry_run: bool
    confirmed: bool
    rows: int
    new: int
    existing: int
    duplicates: int
    invalid: list[ProblemOut]
    confirmations_sent: int
    confirmations_failed: int


class DeliveryOut(BaseModel):
    id: int
    subscriber_id: int | None
    series: str
    part: int
    status: Literal["claimed", "sent", "retry", "failed", "skipped"]
    scheduled_for: dt.datetime
    sent_at: dt.datetime | None
    delivered_at: dt.datetime | None
    attempts: int
    last_error: str | None


class CohortOut(BaseModel):
    series: str
    series_title: str
    part: int
    part_title: str
    count: int
    first_at: dt.datetime


class DayOut(BaseModel):
    date: dt.date
    total: int
    cohorts: list[CohortOut]


class FailureOut(BaseModel):
    delivery_id: int
    subscriber_id: int | None
    series: str
    part: int
    status: str
    reason: str
    when: dt.datetime


class LastDaysOut(BaseModel):
    sent: int
    failed: int
    bounced: int
    retrying: int
    failures: list[FailureOut]


class StatsOut(BaseModel):
    subscribers: dict[str, int]
    week: list[DayOut]
    last_7_days: LastDaysOut
    sending_halted: str | None


# --- series --------------------------------------------------------------------------------


def series_out(session: Session) -> list[SeriesOut]:
    waiting = stats.part_counts(session)
    sent = stats.sent_counts(session)
    result = []
    for s in session.scalars(select(Series).order_by(Series.order, Series.id)):
        parts = session.scalars(select(Part).where(Part.series_id == s.id).order_by(Part.number))
        at = waiting.get(s.id, {})
        result.append(
            SeriesOut(
                slug=s.slug,
                title=s.title,
                description=s.description,
                state=s.state,
                send_day=DAYS[s.send_day],
                send_time=s.send_time,
                cadence=s.cadence,
                queued_at=s.queued_at,
                finished=at.get(0, 0),
                parts=[
                    PartOut(
                        number=p.number,
                        title=p.title,
                        summary=p.summary,
                        first_sent_at=p.first_sent_at,
                        sent=sent.get((s.id, p.number), 0),
                        waiting=at.get(p.number, 0),
                    )
                    for p in parts
                ],
            )
        )
    return result


@router.get("/series", response_model=list[SeriesOut], summary="Every series with its parts")
def list_series(session: SessionDep) -> list[SeriesOut]:
    return series_out(session)


@router.post(
    "/series/{slug}/queue",
    response_model=QueueOut,
    summary="Queue a series for every active subscriber who takes new series",
    responses={400: {"model": ErrorOut}, 404: {"model": ErrorOut}},
)
def queue_series(
    slug: Annotated[str, Path(max_length=100, pattern=SLUG)], body: QueueIn, settings: SettingsDep
) -> QueueOut:
    try:
        queued = series_admin.queue_series(settings, slug, body.start, utcnow())
    except series_admin.SeriesAdminError as exc:
        raise HTTPException(400, str(exc)) from None
    if queued is None:
        raise HTTPException(404, "no series with that slug")
    return QueueOut(slug=slug, count=queued.count, first_date=queued.first_date)


# --- subscribers ---------------------------------------------------------------------------


Status = Literal["pending", "active", "unsubscribed", "bounced", "complained", "erased"]


class SearchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    q: str = Field("", max_length=200, description="Part of an address or name (any case)")
    status: Status | None = None
    limit: int = Field(50, ge=1, le=500)
    offset: int = Field(0, ge=0, le=10_000_000)


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


def _subscriber(session: Session, subscriber_id: int) -> Subscriber:
    sub = session.get(Subscriber, subscriber_id)
    if sub is None:
        raise HTTPException(404, "no subscriber with that id")
    return sub


SubscriberId = Annotated[int, Path(ge=1, le=2**31 - 1)]


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
        return SubscriberOut.of(_subscriber(session, sub_id))


@router.get(
    "/subscribers/{subscriber_id}",
    response_model=SubscriberOut,
    responses={404: {"model": ErrorOut}},
)
def get_subscriber(subscriber_id: SubscriberId, session: SessionDep) -> SubscriberOut:
    return SubscriberOut.of(_subscriber(session, subscriber_id))


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
        sub = _subscriber(session, subscriber_id)
        try:
            roster.update_subscriber(settings, session, sub, body.model_dump(exclude_unset=True))
        except roster.RosterError as exc:
            raise HTTPException(400, str(exc)) from None
        out = SubscriberOut.of(sub)
    return out


@router.post(
    "/subscribers/{subscriber_id}/unsubscribe",
    response_model=SubscriberOut,
    summary="Unsubscribe from everything (idempotent)",
    responses={404: {"model": ErrorOut}},
)
def unsubscribe_subscriber(subscriber_id: SubscriberId, settings: SettingsDep) -> SubscriberOut:
    with session_scope(settings.database_url) as session:
        sub = _subscriber(session, subscriber_id)
        roster.unsubscribe(settings, session, sub)
        out = SubscriberOut.of(sub)
    return out


@router.get(
    "/subscribers/{subscriber_id}/export",
    summary="Everything held about one person (access request)",
    response_model=SubscriberRecord,
    responses={404: {"model": ErrorOut}},
)
def export_subscriber(subscriber_id: SubscriberId, session: SessionDep) -> SubscriberRecord:
    record = export.subscriber_record(session, _subscriber(session, subscriber_id))
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
        ids = roster.erase(settings, session, _subscriber(session, subscriber_id))
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
                raise HTTPException(413, "the file is larger than 50 MB")
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


# --- deliveries and stats ------------------------------------------------------------------


@router.get(
    "/deliveries", response_model=list[DeliveryOut], summary="The delivery ledger, newest first"
)
def list_deliveries(
    session: SessionDep,
    status: Annotated[
        Literal["claimed", "sent", "retry", "failed", "skipped"] | None, Query()
    ] = None,
    series: Annotated[str | None, Query(max_length=100, pattern=SLUG)] = None,
    subscriber_id: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> list[DeliveryOut]:
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
        DeliveryOut(
            id=d.id,
            subscriber_id=d.subscriber_id,
            series=slug,
            part=d.part_number,
            status=d.status,
            scheduled_for=d.scheduled_for,
            sent_at=d.sent_at,
            delivered_at=d.delivered_at,
            attempts=d.attempts,
            last_error=d.last_error,
        )
        for d, slug in rows
    ]


@router.get("/stats", response_model=StatsOut, summary="The dashboard's numbers")
def get_stats(session: SessionDep, settings: SettingsDep) -> StatsOut:
    now = utcnow()
    recent = stats.last_days(session, now)
    return StatsOut(
        subscribers=stats.status_counts(session, now),
        week=[
            DayOut(
                date=d.date,
                total=d.total,
                cohorts=[
                    CohortOut(
                        series=c.series_slug,
                        series_title=c.series_title,
                        part=c.part_number,
                        part_title=c.part_title,
                        count=c.count,
                        first_at=c.first_at,
                    )
                    for c in d.cohorts
                ],
            )
            for d in stats.week_ahead(session, now, settings.default_timezone)
        ],
        last_7_days=LastDaysOut(
            sent=recent.sent,
            failed=recent.failed,
            bounced=recent.bounced,
            retrying=recent.retrying,
            failures=[
                FailureOut(
                    delivery_id=f.delivery_id,
                    subscriber_id=f.subscriber_id,
                    series=f.series_slug,
                    part=f.part_number,
                    status=f.status,
                    reason=f.reason,
                    when=f.when,
                )
                for f in recent.failures
            ],
        ),
        sending_halted=stats.sending_halted(session),
    )
