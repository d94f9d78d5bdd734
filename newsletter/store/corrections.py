"""When a sent part was corrected (parts.corrected_at): written by services.corrections."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from newsletter.store.models import Part


def mark_corrected(session: Session, series_id: int, number: int, now: dt.datetime) -> None:
    session.execute(
        update(Part)
        .where(Part.series_id == series_id, Part.number == number)
        .values(corrected_at=now)
    )


def corrected_at(session: Session, series_id: int, number: int) -> dt.datetime | None:
    return session.scalar(
        select(Part.corrected_at).where(Part.series_id == series_id, Part.number == number)
    )
