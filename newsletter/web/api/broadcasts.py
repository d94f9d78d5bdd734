"""API: broadcasts (one-off letters): list, create, cancel."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path
from pydantic import BaseModel, ConfigDict, Field

from newsletter.content.letter import letter
from newsletter.content.series import ContentError
from newsletter.core.timing import utcnow
from newsletter.services import broadcasts
from newsletter.web.api.common import ErrorOut, SettingsDep, TokenFirstRoute
from newsletter.web.forms import Text

router = APIRouter(route_class=TokenFirstRoute)  # the token before the body

BroadcastId = Annotated[int, Path(ge=1, le=2**31 - 1)]


class BroadcastIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: str = Field(min_length=1, max_length=broadcasts.MAX_TITLE)
    summary: str = Field("", max_length=500, description="One line under the title")
    body_md: Text = Field(min_length=1, max_length=broadcasts.MAX_BODY, description="Markdown")
    audience: str = Field(
        "all", max_length=2000, description="all | series:SLUG[,SLUG] | joined-before:YYYY-MM-DD"
    )
    at: str = Field(
        "now",
        max_length=40,
        description="now | YYYY-MM-DD (each reader's usual send time that day) | "
        "YYYY-MM-DDTHH:MM[+HH:MM] (one moment)",
    )
    archive: bool = Field(False, description="Publish it in the archive and feeds once sent")


class BroadcastOut(BaseModel):
    id: int
    slug: str
    title: str
    audience: str
    when: str
    in_archive: bool
    state: str = Field(description="scheduled / sending / sent / cancelled")
    recipients: int
    sent: int
    waiting: int
    failed: int
    created_at: dt.datetime


def _out(info: broadcasts.BroadcastInfo) -> BroadcastOut:
    return BroadcastOut(**info.__dict__)


@router.get("/broadcasts", response_model=list[BroadcastOut], summary="Every broadcast")
def list_broadcasts(settings: SettingsDep) -> list[BroadcastOut]:
    return [_out(b) for b in broadcasts.list_all(settings)]


@router.post(
    "/broadcasts",
    response_model=BroadcastOut,
    status_code=201,
    summary="Schedule a one-off letter (same exactly-once path as series parts)",
    responses={400: {"model": ErrorOut}},
)
def create_broadcast(body: BroadcastIn, settings: SettingsDep) -> BroadcastOut:
    now = utcnow()
    try:
        info = broadcasts.create(
            settings,
            letter(body.title, body.summary, body.body_md),
            broadcasts.parse_audience(body.audience),
            broadcasts.parse_when(body.at, settings, now),
            in_archive=body.archive,
            now=now,
        )
    except ContentError as exc:
        raise HTTPException(400, "; ".join(exc.errors)) from None
    except broadcasts.BroadcastError as exc:
        raise HTTPException(400, str(exc)) from None
    return _out(info)


@router.get(
    "/broadcasts/{broadcast_id}",
    response_model=BroadcastOut,
    summary="One broadcast",
    responses={404: {"model": ErrorOut}},
)
def get_broadcast(broadcast_id: BroadcastId, settings: SettingsDep) -> BroadcastOut:
    info = broadcasts.get(settings, broadcast_id)
    if info is None:
        raise HTTPException(404, "no broadcast with that id")
    return _out(info)


@router.delete(
    "/broadcasts/{broadcast_id}",
    response_model=BroadcastOut,
    summary="Cancel a broadcast for every reader it has not reached (idempotent)",
    responses={404: {"model": ErrorOut}},
)
def cancel_broadcast(broadcast_id: BroadcastId, settings: SettingsDep) -> BroadcastOut:
    info = broadcasts.cancel(settings, broadcast_id, utcnow())
    if info is None:
        raise HTTPException(404, "no broadcast with that id")
    return _out(info)
