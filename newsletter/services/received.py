"""The articles a reader has received, and a copy of one on request ("send me this again").

A copy goes outside the ledger: the ledger keeps its one row per part (exactly once for the
scheduled send), and the copy carries no delivery id, series or part for the provider's events.
Only parts the ledger says were sent to this reader can be asked for; one copy per address per
10 minutes (3 a day, the caller's counter), only to an active or unsubscribed reader
(mailing.mail_on_request); whether a copy went out never shows.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from newsletter.core.config import Settings
from newsletter.core.vocabulary import ERASED
from newsletter.mail.render import Renderer
from newsletter.services import mailing, people
from newsletter.store import ledger
from newsletter.store import series as series_store
from newsletter.store.db import session_scope
from newsletter.store.models import Part, Series, Subscriber

log = logging.getLogger(__name__)

COPY = "copy"  # message kind: a copy of a received article (no series/part custom_args)
COUNTER = "again:"  # the per-address counter's key prefix (before the reader's email key)


class NoReader(Exception):
    """The link's reader doesn't exist, or was erased."""


@dataclass(frozen=True)
class Received:
    """One part the ledger says went out to this reader."""

    key: str  # "slug/number": what the page posts back to ask for a copy
    series: str  # the series' title
    number: int
    title: str
    sent_at: dt.datetime | None


@dataclass(frozen=True)
class Copy:
    """A copy asked for and allowed by the ledger: what sending it needs (rows detached)."""

    subscriber: people.Person
    series: Series
    part: Part
    count: int  # parts in the series, for "part n of m"


@dataclass(frozen=True)
class Asked:
    """The page after asking: the reader's received parts; whether the part asked for is one
    of them; the copy to send (after the response) when it is."""

    items: list[Received]
    known: bool
    copy: Copy | None


def _reader(session: Session, public_id: str) -> Subscriber:
    subscriber = people.by_public_id(session, public_id)
    if subscriber is None or subscriber.status == ERASED:
        raise NoReader
    return subscriber


def _received(session: Session, subscriber: Subscriber) -> list[Received]:
    rows = ledger.received_parts(session, subscriber.id)
    return [Received(f"{slug}/{n}", st, n, pt, at) for slug, st, n, pt, at in rows]


def received(settings: Settings, public_id: str) -> list[Received]:
    """The parts sent to this reader, oldest first; NoReader."""
    with session_scope(settings.database_url) as session:
        return _received(session, _reader(session, public_id))


def ask_again(settings: Settings, public_id: str, key: str) -> Asked:
    """A copy of part `key` ("slug/number") if the ledger says it went to this reader; NoReader."""
    with session_scope(settings.database_url) as session:
        subscriber = _reader(session, public_id)
        items = _received(session, subscriber)
        known = any(item.key == key for item in items)
        found = _part(session, key) if known else None
        copy = None if found is None else Copy(people.person_of(subscriber), *found)
    return Asked(items, known, copy)


def _part(session: Session, key: str) -> tuple[Series, Part, int] | None:
    slug, _, number = key.rpartition("/")
    series = series_store.by_slug(session, slug)
    if series is None or not number.isdecimal():
        return None
    part = session.scalar(
        select(Part).where(Part.series_id == series.id, Part.number == int(number))
    )
    count = session.scalar(select(func.count()).where(Part.series_id == series.id))
    if part is None:
        return None
    session.expunge(series)
    session.expunge(part)
    return series, part, int(count or 1)


def send_copy(settings: Settings, copy: Copy, allowed: Callable[[str], bool]) -> None:
    """Send the copy unless `allowed` (the per-address counter, given its key) says no or the
    reader's status doesn't take mail on request. Failures are logged, never raised (this runs
    after the response)."""
    subscriber = copy.subscriber
    if not allowed(COUNTER + subscriber.email_key):
        log.info("copy not sent: within the per-address limit or Redis down")
        return
    if not mailing.mail_on_request(subscriber):  # counted above all the same: same work
        log.info("copy not sent: the reader's status is %s", subscriber.status)
        return
    try:
        article = Renderer(settings).article(copy.series, copy.part, copy.count)
        message = dataclasses.replace(article, kind=COPY, series=None, part=None)
        mailing.deliver(settings, message, [mailing.personal(settings, subscriber, COPY)])
    except Exception:
        log.exception("copy could not be sent")
