"""Series and parts in the database, synced from validated series files (content)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from newsletter.content.series import DEFAULT_ORDER, ContentError, SeriesSpec
from newsletter.store.models import DRAFT, Part, Series


@dataclass
class SyncReport:
    new_series: list[str] = field(default_factory=list)
    appended: dict[str, list[int]] = field(default_factory=dict)  # parts added to existing series
    changed: dict[str, list[int]] = field(default_factory=dict)  # existing parts whose text changed
    removed: dict[str, list[int]] = field(default_factory=dict)  # unsent parts dropped
    updated: list[str] = field(default_factory=list)  # series whose settings changed

    def summary(self) -> str:
        bits = [f"{len(self.new_series)} new series"]
        bits.append(f"{sum(map(len, self.appended.values()))} parts appended")
        bits.append(f"{sum(map(len, self.changed.values()))} parts changed")
        if self.removed:
            bits.append(f"{sum(map(len, self.removed.values()))} unsent parts removed")
        if self.updated:
            bits.append(f"{len(self.updated)} series settings updated")
        return ", ".join(bits)


def _plan_errors(series: Series, parts: dict[int, Part], spec: SeriesSpec) -> list[str]:
    """Refuse to remove or reorder parts that have gone out to anyone."""
    errors: list[str] = []
    by_name = {p.filename: p for p in spec.parts}
    for number, part in sorted(parts.items()):
        if part.first_sent_at is None:
            continue
        new = by_name.get(part.filename)
        sent = part.first_sent_at.strftime("%Y-%m-%d")
        if new is None:
            errors.append(
                f"{spec.path}:{_parts_line(spec)}: part {number} ({part.filename}) was sent on "
                f"{sent} and can't be removed; put it back in parts"
            )
        elif new.number != number:
            errors.append(
                f"{spec.path}:{new.line}: part {part.filename} was sent as part {number} on "
                f"{sent} and can't move to position {new.number}; add new parts after the "
                "sent ones"
            )
    return errors


def _parts_line(spec: SeriesSpec) -> int:
    return spec.parts[0].line - 1 if spec.parts else 1


def sync(session: Session, specs: list[SeriesSpec]) -> SyncReport:
    """Upsert Series and Part rows from the files; new series are drafts.

    Raises ContentError (and changes nothing) if a sent part would be removed or reordered.
    """
    existing = {s.slug: s for s in session.scalars(select(Series))}
    parts_of: dict[int, dict[int, Part]] = {}
    for part in session.scalars(select(Part)):
        parts_of.setdefault(part.series_id, {})[part.number] = part

    errors: list[str] = []
    for spec in specs:
        series = existing.get(spec.slug)
        if series is not None:
            errors.extend(_plan_errors(series, parts_of.get(series.id, {}), spec))
    if errors:
        raise ContentError(errors)

    report = SyncReport()
    for spec in specs:
        series = existing.get(spec.slug)
        order = spec.order if spec.order is not None else DEFAULT_ORDER
        settings: dict[str, Any] = {
            "title": spec.title,
            "description": spec.description,
            "send_day": spec.send_day,
            "send_time": spec.send_time,
            "cadence": spec.cadence,
            "order": order,
        }
        if series is None:
            series = Series(slug=spec.slug, state=DRAFT, content_hash=spec.content_hash, **settings)
            session.add(series)
            session.flush()
            report.new_series.append(spec.slug)
            old_parts: dict[int, Part] = {}
        else:
            if any(getattr(series, key) != value for key, value in settings.items()):
                report.updated.append(spec.slug)
                for key, value in settings.items():
                    setattr(series, key, value)
            series.content_hash = spec.content_hash
            old_parts = parts_of.get(series.id, {})
        max_old = max(old_parts, default=0)
        for part_spec in spec.parts:
            row = old_parts.get(part_spec.number)
            if row is None:
                session.add(
                    Part(
                        series_id=series.id,
                        number=part_spec.number,
                        filename=part_spec.filename,
                        title=part_spec.title,
                        summary=part_spec.summary,
                        body_md=part_spec.body_md,
                        content_hash=part_spec.content_hash,
                    )
                )
                if spec.slug not in report.new_series and part_spec.number > max_old:
                    report.appended.setdefault(spec.slug, []).append(part_spec.number)
            elif row.content_hash != part_spec.content_hash or row.filename != part_spec.filename:
                row.filename = part_spec.filename
                row.title = part_spec.title
                row.summary = part_spec.summary
                row.body_md = part_spec.body_md
                row.content_hash = part_spec.content_hash
                report.changed.setdefault(spec.slug, []).append(part_spec.number)
        for number in sorted(set(old_parts) - {p.number for p in spec.parts}):
            session.delete(old_parts[number])  # unsent: _plan_errors refused the sent ones
            report.removed.setdefault(spec.slug, []).append(number)
    session.flush()
    return report


def by_slug(session: Session, slug: str) -> Series | None:
    """The series (or broadcast) with this slug, or None: the one lookup every module uses."""
    return session.scalar(select(Series).where(Series.slug == slug))
