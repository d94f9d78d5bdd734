"""The calendar's days: every send (series, part, moment) with its readers' count and zones."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from newsletter.core import schedule_rule as rule
from newsletter.core import timing
from newsletter.store.calendar.catalogue import Catalogue, catalogue
from newsletter.store.calendar.groups import groups
from newsletter.store.models import BROADCAST_KIND


@dataclass
class Send:
    """One calendar entry: a part of a series going out at one moment, to `count` readers."""

    series_slug: str
    series_title: str
    part_number: int
    part_title: str
    at: dt.datetime  # UTC
    count: int = 0
    zones: dict[str, int] = field(default_factory=dict)  # reader zone -> readers
    broadcast: bool = False

    def local_slots(self) -> list[tuple[str, str, int]]:
        """(zone, their local time like "Tue 09:00", readers), biggest first."""
        out = []
        for zone, n in sorted(self.zones.items(), key=lambda kv: (-kv[1], kv[0])):
            local = self.at.astimezone(timing.zone_info(zone))
            out.append((zone, f"{local:%a %H:%M}", n))
        return out


@dataclass
class Day:
    date: dt.date
    sends: list[Send] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(s.count for s in self.sends)


def sends(
    session: Session, now: dt.datetime, end: dt.datetime, cat: Catalogue | None = None
) -> list[Send]:
    """Every send from `now` until `end`: (series, part, moment) with its readers' count and
    zones, in time order."""
    cat = cat or catalogue(session)
    found: dict[tuple[int, int, dt.datetime], Send] = {}
    for g in groups(session, cat, now, end):
        for key, number, at in rule.project(g.queue, now, end):
            send = found.get((key, number, at))
            if send is None:
                s = cat.series[key]
                send = found[(key, number, at)] = Send(
                    s.slug, s.title, number, cat.part_title(key, number), at,
                    broadcast=s.kind == BROADCAST_KIND,
                )  # fmt: skip
            send.count += g.count
            zone = g.queue.reader.zone
            send.zones[zone] = send.zones.get(zone, 0) + g.count
    return sorted(found.values(), key=lambda s: (s.at, s.series_title, s.part_number))


def upcoming(
    session: Session,
    now: dt.datetime,
    zone: str,
    weeks: int = 4,
    start: dt.date | None = None,
) -> list[Day]:
    """`weeks` weeks (in `zone`, the practice's) from the Monday of `start` (default: today),
    each day with its sends."""
    tz = timing.zone_info(zone)
    first = start or now.astimezone(tz).date()
    first -= dt.timedelta(days=first.weekday())
    days = [Day(first + dt.timedelta(days=i)) for i in range(weeks * 7)]
    end = dt.datetime.combine(days[-1].date + dt.timedelta(days=1), dt.time(0), tz)
    by_date = {d.date: d for d in days}
    for send in sends(session, now, end.astimezone(dt.UTC)):
        day = by_date.get(send.at.astimezone(tz).date())
        if day is not None:
            day.sends.append(send)
    return days
