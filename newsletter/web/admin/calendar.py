"""The send calendar (/admin/calendar): the coming weeks, per series and part, and who is in each count."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, Response

from newsletter.services import calendar
from newsletter.web.admin.common import Db, PartNumber, page, require_admin, settings_of

protected = APIRouter(prefix="/admin", dependencies=[Depends(require_admin)])


@protected.get("/calendar", response_class=HTMLResponse, include_in_schema=False)
def calendar_page(
    request: Request, db: Db, weeks: Annotated[int, Query(ge=1, le=calendar.MAX_WEEKS)] = 4
) -> Response:
    view = calendar.calendar_view(
        db, settings_of(request).default_timezone, calendar.utcnow(), weeks=weeks
    )
    return page(
        request,
        "admin/calendar.html",
        {
            "nav": "calendar",
            "weeks": view.by_week(),
            "weeks_count": view.weeks,
            "today": view.today,
            "busy": view.busy,
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
    found = calendar.people_at(db, slug, part, moment, calendar.utcnow())
    if found is None:
        raise HTTPException(404, "no such series")
    return page(
        request,
        "admin/calendar_people.html",
        {
            "nav": "calendar",
            "series": found.series,
            "part": part,
            "at": moment,
            "count": found.count,
            "people": found.people,
            "cut": found.cut,
        },
    )
