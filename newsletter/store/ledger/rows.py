"""The ledger's row shapes: the plain columns send_chunk reads, the values the engine passes in."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, NamedTuple

from newsletter.store.models import Delivery, Enrollment, Subscriber

# On a row reconcile resent (its first hand-over's outcome stayed unknown): kept once it is sent,
# so the ledger says why that reader may have had the part twice.
RESENT_NOTE = "outcome unknown after a crash; sent again"

Move = tuple[int, int, dt.datetime | None]  # (enrollment id, next part, due or None)
QueueChange = tuple[int, dt.datetime | None]  # (enrollment id, due or None to remove)


# Only the columns dispatch and schedule read (anything else still loads on access): a burst
# loads thousands of rows per round, and every skipped datetime column saves a conversion.
LEDGER_COLUMNS = (
    Delivery.id,
    Delivery.status,
    # not handed yet (retry_at set), as a flag: the datetime itself is never read, and its
    # conversion was one of three per recipient
    Delivery.retry_at.is_not(None).label("unhanded"),
    Delivery.part_number,
    Delivery.scheduled_for,
)
PERSON_COLUMNS = (
    Subscriber.id,
    Subscriber.public_id,
    Subscriber.email,
    Subscriber.name,
    Subscriber.status,
    Subscriber.timezone,
    Subscriber.cadence,
    Subscriber.paused_until,
)
PLACE_COLUMNS = (
    Enrollment.id,
    Enrollment.state,
    Enrollment.next_part,
    Enrollment.not_before,
    Enrollment.next_due_at,
)


@dataclass(slots=True)
class LedgerRow:
    """The ledger columns send_chunk reads (in LEDGER_COLUMNS order)."""

    id: int
    status: str
    unhanded: bool  # claimed and not handed yet (retry_at is set)
    part_number: int
    scheduled_for: dt.datetime


@dataclass(slots=True)
class PersonRow:
    """The subscriber columns send_chunk reads (in PERSON_COLUMNS order)."""

    id: int
    public_id: str
    email: str
    name: str | None
    status: str
    timezone: str
    cadence: str
    paused_until: dt.date | None


@dataclass(slots=True)
class PlaceRow:
    """The enrollment columns send_chunk reads (in PLACE_COLUMNS order). Writes go through
    bulk UPDATEs; the ORM object is loaded only where schedule.advance needs one (a series'
    last part), so a chunk builds no 1,000 ORM objects."""

    id: int
    state: str
    next_part: int
    not_before: dt.date | None
    next_due_at: dt.datetime | None


def split_row(row: Any) -> tuple[LedgerRow, PersonRow, PlaceRow]:
    """A send_chunk result row -> (ledger, subscriber and enrollment columns)."""
    return LedgerRow(*row[:5]), PersonRow(*row[5:13]), PlaceRow(*row[13:])


class Claim(NamedTuple):
    """An enrollment that is due: its id and the slot its ledger row is for."""

    id: int
    next_due_at: dt.datetime | None
