"""API: the send calendar as data — the same projection, from the same service, as the admin's page."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel

from newsletter.services import calendar
from newsletter.web.api.common import SessionDep, SettingsDep, TokenFirstRoute

router = APIRouter(route_class=TokenFirstRoute)


class LocalTimeOut(BaseModel):
    zone: str
    time: str  # the readers' local send time, e.g. "Tue 09:00"
    count: int


class CalendarEntryOut(BaseModel):
    day: dt.date  # in the practice's zone
    series: str  # the slug
    series_title: str
    part: int
    part_title: str
    broadcast: bool
    count: int
    local_times: list[LocalTimeOut]


class ComingSendOut(BaseModel):
    series: str  # the slug
    series_title: str
    part: int
    part_title: str
    broadcast: bool
    at: dt.datetime  # UTC
    local_date: dt.date  # in the reader's zone

    @classmethod
    def of(cls, send: calendar.ComingSend) -> ComingSendOut:
        return cls(
            series=send.series_slug,
            series_title=send.series_title,
            part=send.part_number,
            part_title=send.part_title,
            broadcast=send.broadcast,
            at=send.at,
            local_date=send.local_date,
        )


class CalendarOut(BaseModel):
    zone: str
    start: dt.date
    weeks: int
    entries: list[CalendarEntryOut]


@router.get(
    "/calendar",
    response_model=CalendarOut,
    summary="What goes out: one entry per day (practice's zone), series and part",
)
def get_calendar(
    session: SessionDep,
    settings: SettingsDep,
    start: Annotated[dt.date | None, Query(alias="from")] = None,
    weeks: Annotated[int, Query(ge=1, le=calendar.MAX_WEEKS)] = 4,
) -> CalendarOut:
    view = calendar.calendar_view(
        session, settings.default_timezone, calendar.utcnow(), start, weeks
    )
    return CalendarOut(
        zone=view.zone,
        start=view.start,
        weeks=view.weeks,
        entries=[
            CalendarEntryOut(
                day=e.day,
                series=e.series_slug,
                series_title=e.series_title,
                part=e.part_number,
                part_title=e.part_title,
                broadcast=e.broadcast,
                count=e.count,
                local_times=[
                    LocalTimeOut(zone=t.zone, time=t.time, count=t.count) for t in e.local_times
                ],
            )
            for e in view.entries()
        ],
    )
