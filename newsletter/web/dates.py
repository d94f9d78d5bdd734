"""The one date style of every page: "Tue 5 Jan 2027", with ", 09:00" when a time matters.

Registered as Jinja filters in web/pages.py: `day` (a date or datetime), `local` (a UTC moment in
a zone), and `clock` (just "09:00"). Emails keep their own wording (mail/render.py, the welcome).
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from markupsafe import Markup

from newsletter.web import zones

DASH = "—"


def _zone(zone: str | None) -> dt.tzinfo:
    try:
        return ZoneInfo(zone) if zone else dt.UTC
    except (ValueError, KeyError):
        return dt.UTC


def day_text(value: dt.date) -> str:
    return f"{value:%a} {value.day} {value:%b %Y}"


def format_day(value: dt.date | dt.datetime | str | None, zone: str | None = None) -> str:
    """ "Tue 5 Jan 2027"; a datetime is first moved to `zone` (UTC when none)."""
    if value is None or value == "":
        return DASH
    if isinstance(value, str):  # an ISO date from a form
        try:
            return day_text(dt.date.fromisoformat(value))
        except ValueError:
            return value
    if isinstance(value, dt.datetime):
        value = value.astimezone(_zone(zone)).date()
    return day_text(value)


def format_local(value: dt.datetime | None, zone: str | None = None) -> str:
    """ "Tue 5 Jan 2027, 09:00" in `zone`."""
    if value is None:
        return DASH
    moment = value.astimezone(_zone(zone))
    return f"{day_text(moment.date())}, {moment:%H:%M}"


def format_moment(value: dt.datetime | None, zone: str) -> Markup:
    """ "Tue 5 Jan 2027, 09:00, UK (London) time": a reader's own time, saying whose (the zone
    in the one zone style: its friendly name, the id on hover)."""
    if value is None:
        return Markup(DASH)
    return Markup("{}, {} time").format(format_local(value, zone), zones.with_id(zone))


def format_clock(value: dt.datetime | None, zone: str | None = None) -> str:
    """ "09:00" in `zone`."""
    return DASH if value is None else f"{value.astimezone(_zone(zone)):%H:%M}"
