"""One person's fields as the roster and the import take them, checked by the identity rules."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple

from sqlalchemy import select
from sqlalchemy.orm import Session

from newsletter.core import identity
from newsletter.engine import schedule
from newsletter.services.import_standing import Standing
from newsletter.store.models import (
    ACTIVE,
    PENDING,
    SERIES_KIND,
    Series,
    Subscriber,
)

_SERIES_SPLIT = re.compile(r"[\s|,;]+")


class RosterError(Exception):
    """The whole file or request can't be used; the message says why and fits on one line."""


class CheckedPerson(NamedTuple):
    """One valid row (or one person added by hand). A named tuple: an import makes one per row,
    and a tuple is made in a third of a frozen dataclass's time."""

    line: int
    email: str
    name: str | None
    timezone: str
    series: tuple[str, ...] = ()
    # status, choices and consent evidence from an import's file (None: a plain list, where
    # the import's flag decides; services.import_standing)
    standing: Standing | None = None

    @property
    def key(self) -> str:
        return identity.email_key(self.email)


@dataclass(frozen=True)
class Problem:
    line: int
    reason: str


def check_series(raw: str | None, known: set[str]) -> tuple[str, ...]:
    slugs = tuple(s for s in _SERIES_SPLIT.split((raw or "").strip()) if s)
    unknown = [s for s in slugs if s not in known]
    if unknown:
        raise ValueError(f"unknown series {', '.join(sorted(set(unknown)))[:120]}")
    return tuple(dict.fromkeys(slugs))


def make_person(
    line: int,
    email: str,
    name: str | None,
    timezone: str | None,
    series: str | Iterable[str] | None,
    *,
    default_timezone: str,
    known_series: set[str],
) -> CheckedPerson:
    """Validate one person's fields (core.identity's rules); ValueError with the first problem."""
    series_text = series if isinstance(series, str) or series is None else " ".join(series)
    return CheckedPerson(
        line=line,
        email=identity.normalise_email(email),
        name=identity.clean_name(name),
        timezone=identity.check_zone(timezone, default_timezone),
        series=check_series(series_text, known_series),
    )


PersonMaker = Callable[[int, str, str | None, str | None, str | None], CheckedPerson]

# What an import says about a bad cell: its column and the rule, never the cell (the reasons are
# kept in Redis and shown on pages and in reports; a cell may hold an address or a name, and a
# validator's own message may quote it). Messages of core.identity that quote nothing pass as
# they are; any other becomes the column's rule.
CELL_RULES = {
    "email": "not a valid email address (one address: a name, @ and a domain, no spaces)",
    "name": f"the name must be one line of at most {identity.NAME_MAX} characters",
    "timezone": "unknown time zone (use a name like Europe/London)",
    "series": "names a series that does not exist (the slugs `newsletter series list` shows)",
}
_PLAIN_MESSAGES = frozenset(
    {
        "no email address",
        "not a valid email address (control characters)",
        "email address is too long",
        "name contains control characters",
        f"name is longer than {identity.NAME_MAX} characters",
        "unknown time zone (use a name like Europe/London)",
    }
)


def cell_problem(column: str, exc: ValueError) -> ValueError:
    """The error to report for a bad cell in `column`: "column: rule", without the cell."""
    message = str(exc)
    return ValueError(f"{column}: {message if message in _PLAIN_MESSAGES else CELL_RULES[column]}")


def _cell(column: str, check: Callable[[Any], Any], raw: Any) -> Any:
    try:
        return check(raw)
    except ValueError as exc:
        raise cell_problem(column, exc) from None


MEMO_MAX = 1024  # distinct time zone and series cells remembered per import (a file has a few)
MEMO_CELL = 200  # longer cells are checked each time, never kept


def _remembered(memo: dict[str | None, tuple[Any, str | None]], raw: str | None,
                check: Callable[[str | None], Any]) -> Any:  # fmt: skip
    """check(raw), or the ValueError it raised, looked up in `memo` first; kept there when the
    memo is under MEMO_MAX cells and the cell no longer than MEMO_CELL."""
    found = memo.get(raw)
    if found is None:
        try:
            found = (check(raw), None)
        except ValueError as exc:
            found = (None, str(exc))
        if len(memo) < MEMO_MAX and len(raw or "") <= MEMO_CELL:
            memo[raw] = found
    if found[1] is not None:
        raise ValueError(found[1])
    return found[0]


def person_maker(*, default_timezone: str, known_series: set[str]) -> PersonMaker:
    """`make_person` for the many rows of one import: the same rules and the same first problem,
    reported by column and rule without the cell (cell_problem), and each distinct time zone and
    series cell is checked once (a file has a handful; up to MEMO_MAX short ones remembered: memory stays bounded)."""
    zones: dict[str | None, tuple[Any, str | None]] = {}
    chosen: dict[str | None, tuple[Any, str | None]] = {}

    def zone_of(raw: str | None) -> str:
        return _cell("timezone", lambda r: identity.check_zone(r, default_timezone), raw)

    def series_of(raw: str | None) -> tuple[str, ...]:
        return _cell("series", lambda r: check_series(r, known_series), raw)

    def make(
        line: int, email: str, name: str | None, timezone: str | None, series: str | None
    ) -> CheckedPerson:
        address = _cell("email", identity.normalise_email, email)
        cleaned = _cell("name", identity.clean_name, name) if name else None
        zone = _remembered(zones, timezone, zone_of)
        slugs = _remembered(chosen, series, series_of)
        return CheckedPerson(line, address, cleaned, zone, slugs)

    return make


def known_series(session: Session) -> set[str]:
    return set(session.scalars(select(Series.slug).where(Series.kind == SERIES_KIND)))


def new_subscriber(
    person: CheckedPerson, *, confirmed: bool, method: str, now: dt.datetime
) -> Subscriber:
    """The row for a person added by hand or imported: pending, or active with consent noted."""
    return Subscriber(
        public_id=identity.new_public_id(),
        email=person.email,
        email_key=person.key,
        name=person.name,
        timezone=person.timezone,
        status=ACTIVE if confirmed else PENDING,
        requested_series=list(person.series) or None,
        consent_method=method,
        consent_at=now if confirmed else None,
        consent_form=method if confirmed else None,
        confirmed_at=now if confirmed else None,
        created_at=now,
        updated_at=now,
    )


def activate(
    session: Session, subscriber: Subscriber, series: Iterable[str], now: dt.datetime
) -> None:
    """Enroll a confirmed subscriber (engine's schedule.enroll); Redis follows after the commit."""
    schedule.enroll(session, subscriber, now, series_slugs=list(series) or None)
    session.flush()
