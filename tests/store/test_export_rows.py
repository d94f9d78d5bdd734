"""The export's read: one statement a page of readers, whatever the number of pages, and each
reader's series as the export writes them."""

from __future__ import annotations

import datetime as dt
import threading

import pytest
from engine_support import ship, utc
from scale_support import add_readers, statements
from sqlalchemy import delete, func, select, update

from newsletter.core.config import Settings
from newsletter.store import export_rows
from newsletter.store.db import session_scope
from newsletter.store.models import CANCELLED, Enrollment, Series, Subscriber

NOW = utc(2027, 1, 4, 12)  # Monday


def _read(settings: Settings, size: int) -> tuple[list[export_rows.ExportPage], int]:
    with session_scope(settings.database_url) as session, statements(settings) as seen:
        pages = list(export_rows.reader_pages(session, size))
    return pages, len(seen)


@pytest.mark.parametrize(("readers", "size", "pages"), [(45, 20, 3), (45, 9, 5), (45, 50, 1)])
def test_one_statement_a_page_however_many_pages(
    settings: Settings, readers: int, size: int, pages: int
) -> None:
    ship(settings, NOW)
    add_readers(settings, NOW, readers)
    got, count = _read(settings, size)
    assert [len(p.id) for p in got][:-1] == [size] * (pages - 1)
    assert sum(len(p.id) for p in got) == readers
    # a full last page asks once more (and finds nobody); a short one is known to be the last
    assert count == pages + (readers % size == 0)


def test_no_statement_lists_the_page_s_ids(settings: Settings) -> None:
    ship(settings, NOW)
    add_readers(settings, NOW, 30)
    with session_scope(settings.database_url) as session, statements(settings) as seen:
        list(export_rows.reader_pages(session, 10))
    assert len(seen) == 4
    assert not any(" IN " in s.upper() for s in seen.seen), seen.seen


def test_a_reader_s_series_in_queue_order_without_the_deselected(settings: Settings) -> None:
    ship(settings, NOW)
    first, second, third = add_readers(settings, NOW, 3)
    with session_scope(settings.database_url) as session:
        places = session.execute(
            select(Enrollment.id, Series.slug)
            .join(Series, Series.id == Enrollment.series_id)
            .where(Enrollment.subscriber_id == second)
            .order_by(Enrollment.position)
        ).all()
        assert len(places) >= 2
        dropped = Enrollment.id == places[0][0]
        session.execute(update(Enrollment).where(dropped).values(state=CANCELLED))
        everyone = Enrollment.subscriber_id == first
        session.execute(update(Enrollment).where(everyone).values(state=CANCELLED))
        session.execute(delete(Enrollment).where(Enrollment.subscriber_id == third))
        session.execute(update(Subscriber).where(Subscriber.id == third).values(
            requested_series=["a", "b"]))  # fmt: skip
    with session_scope(settings.database_url) as session:
        (page,) = export_rows.reader_pages(session, 10)
    taken = dict(zip(page.id, page.taken, strict=True))
    assert taken[first] == ""  # enrolled, every series deselected: none, not all
    assert taken[second] == " ".join(slug for _, slug in places[1:])
    assert taken[third] is None  # never enrolled: what they asked for says
    assert dict(zip(page.id, page.requested, strict=True))[third] == ["a", "b"]


def test_the_series_follow_positions_not_row_ids(settings: Settings) -> None:
    # each slug carries its queue place: an aggregate's own order (not promised on SQLite)
    # never decides it
    ship(settings, NOW)
    (reader,) = add_readers(settings, NOW, 1)
    with session_scope(settings.database_url) as session:
        rows = session.execute(
            select(Enrollment.id, Enrollment.position, Series.slug)
            .join(Series, Series.id == Enrollment.series_id)
            .where(Enrollment.subscriber_id == reader, Series.kind == "series")
            .order_by(Enrollment.id)
        ).all()
        assert len(rows) >= 2
        for n, (eid, _, _) in enumerate(rows):  # reversed, and across zero: -1 before 0
            session.execute(update(Enrollment).where(Enrollment.id == eid).values(
                position=len(rows) - n - 2))  # fmt: skip
    with session_scope(settings.database_url) as session:
        (page,) = export_rows.reader_pages(session, 10)
    assert page.taken[0] == " ".join(slug for _, _, slug in reversed(rows))


@pytest.mark.parametrize("micro", [0, 1, 500_000, 999_999])
def test_moments_and_dates_read_as_isoformat_writes_them(settings: Settings, micro: int) -> None:
    # the database writes the text: the microseconds only when there are some, UTC's offset
    ship(settings, NOW)
    (reader,) = add_readers(settings, NOW, 1)
    consent = utc(2026, 12, 31, 23, 59, 58).replace(microsecond=micro)
    with session_scope(settings.database_url) as session:
        session.execute(update(Subscriber).where(Subscriber.id == reader).values(
            consent_at=consent, confirmed_at=None, paused_until=dt.date(2027, 2, 3)))  # fmt: skip
        created = session.scalar(select(Subscriber.created_at).where(Subscriber.id == reader))
    assert created is not None
    with session_scope(settings.database_url) as session:
        (page,) = export_rows.reader_pages(session, 10)
    assert page.consent_at[0] == consent.isoformat()
    assert page.confirmed_at[0] is None
    assert page.created_at[0] == created.isoformat()
    assert page.paused_until[0] == "2027-02-03"


def test_a_reading_stopped_early_leaves_nothing_reading(settings: Settings) -> None:
    # on PostgreSQL the next page is read in a thread: a download cut off after the first page
    # must wait for that read, so the session is the caller's again and no reader is left
    ship(settings, NOW)
    add_readers(settings, NOW, 30)
    with session_scope(settings.database_url) as session:
        pages = export_rows.reader_pages(session, 10)
        assert len(next(pages).id) == 10
        pages.close()
        assert not [t for t in threading.enumerate() if t.name.startswith("export-read")]
        assert session.scalar(select(func.count()).select_from(Subscriber)) == 30
