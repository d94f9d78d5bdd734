"""What an imported row says about its person beyond address, name and zone: the status, the
choices and the consent evidence an export writes, checked and settled into one `Standing`.

The rules (README "Subscribers" → "Import"):
- a row without a status (a plain list from elsewhere) is what the import's `--confirmed` flag
  says: active with consent recorded now as "import-consented", or pending with a confirmation
  email;
- `active` with consent evidence (consent_method and consent_at) stays active, its evidence,
  confirmation and join dates kept as the file has them (an export of this or another install);
  `active` without evidence is a row without a status;
- `pending` stays pending (the file says they never confirmed, whatever the flag);
- `unsubscribed`, `bounced` and `complained` come back in that state: never enrolled, never
  mailed, their choices and dates kept (suppression wins);
- `erased` is refused: an erased person has no row to export, only a hashed suppression.
Cadence, pause, "takes new series" and the series choice are kept for every status.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from newsletter.core import identity
from newsletter.core.vocabulary import (
    ACTIVE,
    BOUNCED,
    CADENCES,
    COMPLAINED,
    ERASED,
    PENDING,
    UNSUBSCRIBED,
    WEEKLY,
)
from newsletter.services.export import (  # NO_SERIES: a series cell that takes no series
    EXPORT_FIELDS,
    NO_SERIES,
)
from newsletter.store.intake import Standing

__all__ = ["NO_SERIES", "STANDING_COLUMNS", "Standing", "StandingMaker", "standing_maker"]

# The columns an export writes besides email, name, timezone and series, in its order.
STANDING_COLUMNS = EXPORT_FIELDS[4:]
KEPT_STATUSES = (PENDING, UNSUBSCRIBED, BOUNCED, COMPLAINED)  # kept whatever the flag says
IMPORT_CONSENTED = "import-consented"
IMPORT = "import"
MEMO_MAX = 1024  # distinct consent text cells remembered per import (memory stays bounded)
_YES = {"yes": True, "y": True, "true": True, "1": True, "no": False, "n": False, "false": False,
        "0": False}  # fmt: skip
_TEXT_MAX = {"consent_method": 32, "consent_ip": 64, "consent_form": 64, "consent_wording": 32}
RULES = {
    "status": "must be one of active, pending, unsubscribed, bounced, complained",
    "erased": "an erased person can't be imported (only a hashed entry of the address is kept)",
    "cadence": "must be weekly or fortnightly",
    "paused_until": "must be a date as YYYY-MM-DD",
    "takes_new_series": "must be yes or no",
    "moment": "must be a date and time as ISO 8601 (2026-03-02T12:00:00+00:00)",
    "text": "must be one line of at most {n} characters",
}


# the standing cells, in STANDING_COLUMNS order (None for a column the file lacks)
StandingMaker = Callable[[tuple[str | None, ...], bool], Standing]


def _bad(column: str, rule: str = "") -> ValueError:
    return ValueError(f"{column}: {RULES.get(rule or column, rule)}")


def _moment(column: str, raw: str | None) -> dt.datetime | None:
    text = (raw or "").strip()
    if not text:
        return None
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        raise _bad(column, "moment") from None
    # a spreadsheet may drop the offset: the export writes UTC
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def _text(column: str, raw: str | None) -> str | None:
    text = (raw or "").strip()
    if not text:
        return None
    limit = _TEXT_MAX[column]
    try:
        return identity.one_line(text, limit)
    except ValueError:
        raise _bad(column, RULES["text"].format(n=limit)) from None


def _status(raw: str | None) -> str | None:
    status = (raw or "").strip().lower()
    if not status:
        return None
    if status == ERASED:
        raise _bad("status", "erased")
    if status != ACTIVE and status not in KEPT_STATUSES:
        raise _bad("status")
    return status


def _choices(cells: dict[str, str | None]) -> tuple[str, dt.date | None, bool]:
    cadence = (cells["cadence"] or "").strip().lower() or WEEKLY
    if cadence not in CADENCES:
        raise _bad("cadence")
    paused_text = (cells["paused_until"] or "").strip()
    try:
        paused = dt.date.fromisoformat(paused_text) if paused_text else None
    except ValueError:
        raise _bad("paused_until") from None
    takes_text = (cells["takes_new_series"] or "").strip().lower()
    takes = _YES.get(takes_text) if takes_text else True
    if takes is None:
        raise _bad("takes_new_series")
    return cadence, paused, takes


def standing_maker(*, confirmed: bool, now: dt.datetime) -> StandingMaker:
    """The one function an import calls for each row that has standing columns: their cells (in
    STANDING_COLUMNS order) and whether its series cell said NO_SERIES -> the Standing, or
    ValueError "column: rule" (never the cell)."""

    texts: dict[tuple[str, str | None], str | None] = {}  # a file repeats its consent words

    def text_of(column: str, raw: str | None) -> str | None:
        key = (column, raw)
        if key in texts:
            return texts[key]
        value = _text(column, raw)  # a bad cell raises: never remembered
        if len(texts) < MEMO_MAX:
            texts[key] = value
        return value

    def make(values: tuple[str | None, ...], no_series: bool) -> Standing:
        cells = dict(zip(STANDING_COLUMNS, values, strict=True))
        cadence, paused, takes = _choices(cells)
        status = _status(cells["status"])
        consent_at = _moment("consent_at", cells["consent_at"])
        stamps = {
            column: _moment(column, cells[column])
            for column in ("confirmed_at", "unsubscribed_at", "created_at")
        }
        evidence = {column: text_of(column, cells[column]) for column in _TEXT_MAX}
        method = evidence["consent_method"]
        kept = status in KEPT_STATUSES or (status == ACTIVE and method and consent_at)
        if not kept:  # no status, or active without evidence: the import's flag decides
            return Standing(
                ACTIVE if confirmed else PENDING,
                cadence,
                paused,
                takes,
                no_series,
                IMPORT_CONSENTED if confirmed else IMPORT,
                now if confirmed else None,
                None,
                IMPORT_CONSENTED if confirmed else None,
                None,
                now if confirmed else None,
                None,
                stamps["created_at"] or now,
            )
        assert status is not None
        return Standing(
            status,
            cadence,
            paused,
            takes,
            no_series,
            method,
            consent_at,
            evidence["consent_ip"],
            evidence["consent_form"],
            evidence["consent_wording"],
            stamps["confirmed_at"],
            stamps["unsubscribed_at"],
            stamps["created_at"] or now,
        )

    return make
