"""API: deliveries and the dashboard's numbers."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query

from newsletter.core.timing import utcnow
from newsletter.services import reports
from newsletter.store import stats
from newsletter.web.api.common import (
    SLUG,
    SessionDep,
    SettingsDep,
    TokenFirstRoute,
)
from newsletter.web.api.schemas import (
    CohortOut,
    DayOut,
    DeliveryOut,
    FailureOut,
    LastDaysOut,
    StatsOut,
)

router = APIRouter(route_class=TokenFirstRoute)  # the token before the body


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
    lines = reports.deliveries(
        session,
        status=status,
        series=series,
        subscriber_id=subscriber_id,
        limit=limit,
        offset=offset,
    )
    return [DeliveryOut.model_validate(line, from_attributes=True) for line in lines]


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
