"""The series and parts the calendar names: rule values, titles and slugs, read once."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from newsletter.core import schedule_rule as rule
from newsletter.store.models import Part, Series


@dataclass(frozen=True)
class Catalogue:
    """The series and parts the projection names: rule values, titles and slugs."""

    series: dict[int, Series]
    titles: dict[tuple[int, int], str]
    times: dict[int, rule.SeriesTimes]

    def part_title(self, series_id: int, number: int) -> str:
        return self.titles.get((series_id, number), f"Part {number}")


def catalogue(session: Session) -> Catalogue:
    """Every series with its parts' titles (two statements)."""
    series = {s.id: s for s in session.scalars(select(Series))}
    titles: dict[tuple[int, int], str] = {}
    counts: dict[int, int] = {}
    for sid, number, title in session.execute(select(Part.series_id, Part.number, Part.title)):
        titles[(sid, number)] = title
        counts[sid] = max(counts.get(sid, 0), number)
    times = {
        s.id: rule.SeriesTimes(s.id, s.send_day, s.send_time, s.cadence, counts.get(s.id, 0))
        for s in series.values()
    }
    return Catalogue(series, titles, times)
