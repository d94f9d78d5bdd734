"""The send calendar (/admin/calendar): the coming weeks, per series and part, and who is in each count."""

from __future__ import annotations

import datetime as dt
from typing import Annotated
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, Response

from newsletter.store import calendar
from newsletter.store.models import utcnow
from newsletter.web.admin.common import Db, PartNumber, page, require_admin, settings_of
from newsletter.web.admin.series import find_series

protected = APIRouter(prefix="/admin", dependencies=[Depends(require_admin)])


@protected.get("/calendar", response_class=HTMLResponse, include_in_schema=False)
def calendar_page(
    request: Request, db: Db, weeks: Annotated[int, Query(ge=1, le=12)] = 4
) -> Response:
    zone = settings_of(request).default_timezone
    now = utcnow()
    days = calendar.upcoming(db, now, zone, weeks)
    today = now.astimezone(ZoneInfo(zone)).date()
    weeks_of_days = [days[i : i + 7] for i in range(0, len(days), 7)]
    return page(
        request,
        "admin/calendar.html",
        {
            "nav": "calendar",
            "weeks": weeks_of_days,
            "weeks_count": weeks,
            "today": today,
            "busy": any(d.sends for d in days),
        },
    )


@protected.get("/calendar/{slug}/{part}", response_class=HTMLResponse, include_in_schema=False)
def calendar_people(
    request: Request, db: Db, slug: str, part: PartNumber, at: Annotated[str, Query()]
) -> Response:
    try:
        moment = dt.datetime.fromisoformat(at.replace("Z", "+00:00"))
    except ValueError:
        raise HTTPException(404, "no such send") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    series = find_series(db, slug)
    count, people = calendar.people(db, series, part, moment, utcnow())
    return page(
        request,
        "admin/calendar_people.html",
        {
            "nav": "calendar",
            "series": series,
            "part": part,
            "at": moment,
            "count": count,
            "people": people,
            "cut": count - len(people),
        },
    )
