"""API: the series with their parts, and queueing one."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path

from newsletter.core.timing import utcnow
from newsletter.services import series_admin
from newsletter.store import stats
from newsletter.store.db import Session
from newsletter.web.api.common import (
    DAYS,
    SLUG,
    ErrorOut,
    SessionDep,
    SettingsDep,
    TokenFirstRoute,
)
from newsletter.web.api.schemas import (
    PartOut,
    QueueIn,
    QueueOut,
    SeriesOut,
)

router = APIRouter(route_class=TokenFirstRoute)  # the token before the body


def series_out(session: Session) -> list[SeriesOut]:
    waiting = stats.part_counts(session)
    sent = stats.sent_counts(session)
    result = []
    for s, parts in series_admin.listing(session):  # broadcasts: /broadcasts
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
