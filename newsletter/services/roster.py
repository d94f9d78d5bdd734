"""The therapist's roster: one person added, found, edited, unsubscribed or erased (admin, API, CLI)."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.orm import Session

from newsletter.core import identity
from newsletter.core.config import Settings
from newsletter.engine import schedule
from newsletter.queue.dueset import RedisQueue
from newsletter.services import calendar as coming
from newsletter.services import export, people, preferences
from newsletter.services.import_standing import Standing
from newsletter.store import ledger
from newsletter.store.db import session_scope
from newsletter.store.models import (
    ACTIVE,
    CADENCES,
    PENDING,
    SERIES_KIND,
    SUBSCRIBER_STATUSES,
    Enrollment,
    Part,
    ProviderEvent,
    Series,
    Subscriber,
    utcnow,
)

ADMIN = "admin"
_SERIES_SPLIT = re.compile(r"[\s|,;]+")


class RosterError(Exception):
    """The whole file or request can't be used; the message says why and fits on one line."""


# --- one person's fields, by the identity rules --------------------------------------------


class Person(NamedTuple):
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
) -> Person:
    """Validate one person's fields (core.identity's rules); ValueError with the first problem."""
    series_text = series if isinstance(series, str) or series is None else " ".join(series)
    return Person(
        line=line,
        email=identity.normalise_email(email),
        name=identity.clean_name(name),
        timezone=identity.check_zone(timezone, default_timezone),
        series=check_series(series_text, known_series),
    )


PersonMaker = Callable[[int, str, str | None, str | None, str | None], Person]

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
    ) -> Person:
        address = _cell("email", identity.normalise_email, email)
        cleaned = _cell("name", identity.clean_name, name) if name else None
        zone = _remembered(zones, timezone, zone_of)
        slugs = _remembered(chosen, series, series_of)
        return Person(line, address, cleaned, zone, slugs)

    return make


def known_series(session: Session) -> set[str]:
    return set(session.scalars(select(Series.slug).where(Series.kind == SERIES_KIND)))


def new_subscriber(person: Person, *, confirmed: bool, method: str, now: dt.datetime) -> Subscriber:
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


# --- adding and finding --------------------------------------------------------------------


def add_subscriber(
    settings: Settings,
    *,
    email: str,
    name: str | None = None,
    timezone: str | None = None,
    series: Iterable[str] = (),
    confirmed: bool = False,
    method: str = ADMIN,
    now: dt.datetime | None = None,
) -> int:
    """Add one person by hand: pending + confirmation email, or (consent given elsewhere) active."""
    now = now or utcnow()
    with session_scope(settings.database_url) as session:
        try:
            person = make_person(
                0,
                email,
                name,
                timezone,
                list(series),
                default_timezone=settings.default_timezone,
                known_series=known_series(session),
            )
        except ValueError as exc:
            raise RosterError(str(exc)) from None
        if people.by_email(session, person.email) is not None:
            raise RosterError("this address is already on the list")
        if people.is_suppressed(session, settings.secret, person.email):
            raise RosterError("this address was erased on request; it can't be added again")
        sub = new_subscriber(
            person,
            confirmed=confirmed,
            method=f"{method}-consented" if confirmed else method,
            now=now,
        )
        session.add(sub)
        session.flush()
        if confirmed:
            activate(session, sub, person.series, now)
        sub_id = sub.id
    if confirmed:
        people.sync_subscribers(settings, [sub_id])
    else:
        from newsletter.services import mailing

        mailing.send_confirmations(settings, [sub_id])
    return sub_id


def find(session: Session, email: str) -> Subscriber | None:
    return people.by_email(session, email)


def search(
    session: Session,
    query: str = "",
    *,
    status: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[people.PersonView], int]:
    """Subscribers whose address or name contains `query` (any case); (page, total)."""
    stmt = select(Subscriber)
    q = "".join(c for c in query if not identity.has_control(c)).strip().lower()  # no NUL
    if q:
        stmt = stmt.where(
            or_(
                Subscriber.email_key.contains(q, autoescape=True),
                func.lower(Subscriber.name).contains(q, autoescape=True),
            )
        )
    if status:
        if status not in SUBSCRIBER_STATUSES:
            raise RosterError(f"unknown status {status!r}")
        stmt = stmt.where(Subscriber.status == status)
    total = session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    page = [
        people.view(row)
        for row in session.scalars(
            stmt.order_by(Subscriber.created_at.desc(), Subscriber.id.desc())
            .limit(limit)
            .offset(offset)
        )
    ]
    return page, total


def count(session: Session) -> int:
    return session.scalar(select(func.count(Subscriber.id))) or 0


def part_title(session: Session, series_id: int, number: int) -> str | None:
    return session.scalar(
        select(Part.title).where(Part.series_id == series_id, Part.number == number)
    )


# --- editing and unsubscribing -------------------------------------------------------------


def update_subscriber(
    settings: Settings,
    session: Session,
    subscriber: Subscriber,
    changes: dict[str, Any],
    now: dt.datetime | None = None,
) -> None:
    """Apply admin edits (name, zone, cadence, pause, new series) and reschedule by the same
    rule as the reader's own preference save (schedule.reschedule: a due part stays due).
    Redis follows when `session` commits."""
    try:
        if "name" in changes:
            subscriber.name = identity.clean_name(changes["name"])
        if changes.get("timezone"):
            subscriber.timezone = identity.check_zone(
                changes["timezone"], settings.default_timezone
            )
    except ValueError as exc:
        raise RosterError(str(exc)) from None
    if changes.get("cadence"):
        if changes["cadence"] not in CADENCES:
            raise RosterError("cadence must be weekly or fortnightly")
        subscriber.cadence = changes["cadence"]
    if "paused_until" in changes:
        subscriber.paused_until = changes["paused_until"]
    if changes.get("takes_new_series") is not None:
        subscriber.takes_new_series = bool(changes["takes_new_series"])
    session.flush()
    schedule.reschedule(session, subscriber, now or dt.datetime.now(dt.UTC))
    session.flush()
    people.sync_after_commit(settings, session, people.enrollment_ids(session, subscriber))


def unsubscribe(
    settings: Settings, session: Session, subscriber: Subscriber, now: dt.datetime | None = None
) -> bool:
    """Stop everything for this person (preferences.unsubscribe) and drop their queue entries
    from Redis once `session` commits. True when this call unsubscribed them."""
    changed = preferences.unsubscribe(session, subscriber, now or utcnow())
    people.sync_after_commit(settings, session, people.enrollment_ids(session, subscriber))
    return changed


# --- erasing -------------------------------------------------------------------------------


def erase(settings: Settings, session: Session, subscriber: Subscriber) -> list[int]:
    """GDPR erasure: the row goes, the ledger and stored events keep no personal data, the
    outbox copies of their emails are deleted, and a keyed hash of the address stays as the
    suppression (events arriving later for it are scrubbed: people.forget_erased_in_events).

    Returns the enrollment ids the caller must drop from the Redis queue after committing.
    """
    sub_id = subscriber.id
    address = subscriber.email_key
    enrollment_ids = list(
        session.scalars(select(Enrollment.id).where(Enrollment.subscriber_id == sub_id))
    )
    ledger.forget_person(session, sub_id)
    session.execute(
        update(ProviderEvent)
        .where(ProviderEvent.subscriber_id == sub_id)
        .values(subscriber_id=None, detail=None)
    )
    session.execute(delete(Enrollment).where(Enrollment.subscriber_id == sub_id))
    session.expunge(subscriber)
    session.execute(delete(Subscriber).where(Subscriber.id == sub_id))
    people.suppress(session, settings.secret, address)
    session.flush()
    _outbox().delete_person_files(settings, address)  # the copies of every email they were sent
    return enrollment_ids


def _outbox() -> Any:
    """The outbox module, loaded on first use: it brings the email renderer (jinja2, markdown),
    which an import (this module's biggest user) never needs: 55 ms off its start-up."""
    from newsletter.mail.backends import outbox

    return outbox


# --- one person by id (the admin's and the API's pages) --------------------------------------


@dataclass(frozen=True)
class Titled:
    title: str


@dataclass(frozen=True)
class Place:
    """One enrollment as a person's page shows it."""

    series_id: int
    state: str
    next_part: int
    next_due_at: dt.datetime | None
    not_before: dt.date | None


@dataclass(frozen=True)
class QueueLine:
    e: Place
    series: Titled
    part_title: str | None
    dates: tuple[tuple[int, dt.datetime], ...]  # (part, UTC moment) expected


@dataclass(frozen=True)
class DeliveryLine:
    part_number: int
    status: str
    scheduled_for: dt.datetime
    sent_at: dt.datetime | None
    delivered_at: dt.datetime | None
    last_error: str | None


@dataclass(frozen=True)
class EventLine:
    event_type: str
    occurred_at: dt.datetime
    detail: str | None


@dataclass(frozen=True)
class Profile:
    """A person's page: who they are, their queue with expected dates, the last 200
    deliveries (with their series) and provider events."""

    person: people.PersonView
    queue: tuple[QueueLine, ...]
    deliveries: tuple[tuple[DeliveryLine, Titled], ...]
    events: tuple[EventLine, ...]
    paused: bool
    next_send: coming.ComingSend | None  # the schedule rule's next send (a part or a letter)


def profile(session: Session, subscriber_id: int, now: dt.datetime) -> Profile | None:
    """Person `subscriber_id`'s page; None if unknown."""
    sub = session.get(Subscriber, subscriber_id)
    if sub is None:
        return None
    sends = coming.coming_sends(session, sub, now)
    plan: dict[int, list[tuple[int, dt.datetime]]] = {}
    for send in sends:
        plan.setdefault(send.series_id, []).append((send.part_number, send.at))
    queue = tuple(
        QueueLine(
            Place(e.series_id, e.state, e.next_part, e.next_due_at, e.not_before),
            Titled(title),
            part_title(session, e.series_id, e.next_part),
            tuple(plan.get(e.series_id, ())),
        )
        for e, title in session.execute(
            select(Enrollment, Series.title)
            .join(Series, Series.id == Enrollment.series_id)
            .where(Enrollment.subscriber_id == sub.id)
            .order_by(Enrollment.position)
        )
    )
    deliveries = tuple(
        (
            DeliveryLine(
                d.part_number, d.status, d.scheduled_for, d.sent_at, d.delivered_at, d.last_error
            ),
            Titled(series.title),
        )
        for d, series in ledger.person_history(session, sub.id)
    )
    events = tuple(
        EventLine(ev.event_type, ev.occurred_at, ev.detail)
        for ev in session.scalars(
            select(ProviderEvent)
            .where(ProviderEvent.subscriber_id == sub.id)
            .order_by(ProviderEvent.occurred_at.desc())
            .limit(200)
        )
    )
    paused = coming.pause_running(sub, now)  # on the reader's own calendar, not UTC's
    return Profile(people.view(sub), queue, deliveries, events, paused, sends[0] if sends else None)


def update_person(
    settings: Settings, session: Session, subscriber_id: int, changes: dict[str, Any]
) -> people.PersonView | None:
    """update_subscriber for person `subscriber_id`; their new view, None if unknown."""
    sub = session.get(Subscriber, subscriber_id)
    if sub is None:
        return None
    update_subscriber(settings, session, sub, changes)
    return people.view(sub)


def unsubscribe_person(
    settings: Settings, session: Session, subscriber_id: int
) -> people.PersonView | None:
    """unsubscribe for person `subscriber_id`; their new view, None if unknown."""
    sub = session.get(Subscriber, subscriber_id)
    if sub is None:
        return None
    unsubscribe(settings, session, sub)
    return people.view(sub)


def new_links(session: Session, subscriber_id: int) -> bool:
    """New preference/unsubscribe links for `subscriber_id` (people.rotate_links); False if
    unknown."""
    sub = session.get(Subscriber, subscriber_id)
    if sub is None:
        return False
    people.rotate_links(sub)
    return True


def erase_person(settings: Settings, session: Session, subscriber_id: int) -> list[int] | None:
    """erase for person `subscriber_id` (the enrollment ids to drop from Redis after the
    commit); None if unknown."""
    sub = session.get(Subscriber, subscriber_id)
    return erase(settings, session, sub) if sub is not None else None


def record(session: Session, subscriber_id: int) -> dict[str, Any] | None:
    """Everything held about `subscriber_id` (export.subscriber_record); None if unknown."""
    sub = session.get(Subscriber, subscriber_id)
    return export.subscriber_record(session, sub) if sub is not None else None


def drop_from_queue(settings: Settings, enrollment_ids: Iterable[int]) -> None:
    ids = list(enrollment_ids)
    if ids:
        RedisQueue(settings).apply((i, None) for i in ids)


def erase_email(settings: Settings, email: str) -> bool:
    """Erase by address (CLI); False when nobody has it (a suppression entry is still added)."""
    with session_scope(settings.database_url) as session:
        sub = find(session, email)
        if sub is None:
            people.suppress(session, settings.secret, email)
            _outbox().delete_person_files(settings, email)
            return False
        ids = erase(settings, session, sub)
    drop_from_queue(settings, ids)
    return True
