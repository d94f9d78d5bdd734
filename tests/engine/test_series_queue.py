"""Queueing a series with a start date: nobody gets part 1 before it, whenever they joined."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from engine_support import add_person, cli_tick, enrollments, utc
from sqlalchemy import select
from typer.testing import CliRunner

from newsletter.cli import app
from newsletter.content import series as content
from newsletter.core import timing
from newsletter.core.config import Settings
from newsletter.engine import series_queue
from newsletter.queue.dueset import RedisQueue
from newsletter.services import calendar as views
from newsletter.services import importing, signup
from newsletter.store import series as series_store
from newsletter.store.db import session_scope
from newsletter.store.models import (
    ACTIVE,
    ENROLLED_ACTIVE,
    SENT,
    UNSUBSCRIBED,
    Delivery,
    Enrollment,
    Series,
    Subscriber,
)

MYTHS = "myths-about-psychotherapy"  # Tuesdays 09:00, the reader's time, weekly
NOW = utc(2027, 3, 1, 12)  # a Monday
START = dt.date(2027, 3, 22)  # three weeks out, a Monday
FIRST = dt.date(2027, 3, 23)  # the first Tuesday on or after START: everyone's part 1
ZONES = {
    "existing": "Europe/London",
    "signup": "America/New_York",
    "import": "Asia/Tokyo",
    "resubscribe": "Australia/Sydney",
}


def _queue(*args: str) -> None:
    result = CliRunner().invoke(app, ["series", "queue", MYTHS, *args])
    assert result.exit_code == 0, result.output


def _drafts(settings: Settings) -> None:
    """schedules/ in the database, nothing queued yet."""
    with session_scope(settings.database_url) as session:
        series_store.sync(session, content.load_all(settings.schedules_dir))


def _slot(zone: str, day: dt.date) -> dt.datetime:
    """Myths' slot (09:00 local) on `day` in `zone`, in UTC."""
    local = dt.datetime.combine(day, dt.time(9), timing.zone_info(zone))
    return local.astimezone(dt.UTC)


def _join_later(settings: Settings, tmp_path: Path) -> dict[str, int]:
    """After the queue: one signs up and confirms, one is imported, one resubscribes."""
    ids: dict[str, int] = {}
    with session_scope(settings.database_url) as session:
        at = NOW + dt.timedelta(days=1)
        result = signup.subscribe(
            session, "new@example.org", "Nora", ZONES["signup"], None, None, "signup", at,
            secret=settings.secret,
        )  # fmt: skip
        assert result.subscriber is not None
        assert signup.confirm(session, result.subscriber, at + dt.timedelta(hours=1))
        ids["signup"] = result.subscriber.id
    source = tmp_path / "people.csv"
    source.write_text(f"email,name,timezone\nimported@example.org,Ida,{ZONES['import']}\n")
    at = NOW + dt.timedelta(days=2)
    report = importing.import_csv(settings, source, dry_run=False, confirmed=True, now=at)
    assert report.new == 1
    with session_scope(settings.database_url) as session:
        ids["import"] = session.scalars(
            select(Subscriber.id).where(Subscriber.email == "imported@example.org")
        ).one()
    return ids


def _resubscribe(settings: Settings, subscriber_id: int) -> None:
    with session_scope(settings.database_url) as session:
        sub = session.get(Subscriber, subscriber_id)
        assert sub is not None
        assert signup.resubscribe(session, sub, NOW + dt.timedelta(days=3))


def _moments() -> list[dt.datetime]:
    """Every moment a tick runs: noon UTC each day, and each zone's Tuesday 09:00."""
    days = [NOW.date() + dt.timedelta(days=n) for n in range(1, 36)]
    moments = {dt.datetime.combine(d, dt.time(12), dt.UTC) for d in days}
    for zone in ZONES.values():
        moments |= {_slot(zone, d) for d in days if d.weekday() == 1}
    return sorted(m for m in moments if m > NOW)


def test_everyone_gets_part_one_at_the_first_slot_on_or_after_the_start(
    settings: Settings, tmp_path: Path
) -> None:
    _drafts(settings)
    people = {"existing": add_person(settings, NOW, ZONES["existing"])}  # nothing live yet
    people["resubscribe"] = add_person(settings, NOW, ZONES["resubscribe"])
    with session_scope(settings.database_url) as session:
        gone = session.get(Subscriber, people["resubscribe"])
        assert gone is not None
        gone.status, gone.unsubscribed_at = UNSUBSCRIBED, NOW  # left before the series
    _queue("--start", START.isoformat(), "--now", NOW.isoformat())
    people |= _join_later(settings, tmp_path)
    _resubscribe(settings, people["resubscribe"])
    with session_scope(settings.database_url) as session:
        assert session.scalars(select(Series.starts_on).where(Series.slug == MYTHS)).one() == START
        RedisQueue(settings).rebuild(session)

    # what the calendar and each reader's coming sends show, read before anything is sent
    later = NOW + dt.timedelta(days=4)
    with session_scope(settings.database_url) as session:
        shown = {}
        for name, sid in people.items():
            sub = session.get(Subscriber, sid)
            assert sub is not None and sub.status == ACTIVE, name
            first = views.coming_sends(session, sub, later, weeks=8)[0]
            shown[name] = (first.part_number, first.at)
        week = views.calendar_view(session, "UTC", later, start=START, weeks=1)
        part_ones = sum(s.count for d in week.days for s in d.sends if s.part_number == 1)
        assert part_ones == len(people)  # everyone's part 1 is in the start week

    for moment in _moments():
        cli_tick(moment)

    with session_scope(settings.database_url) as session:
        rows = list(session.scalars(select(Delivery).where(Delivery.status == SENT)))
    sent = {(d.subscriber_id, d.part_number): (d.scheduled_for, d.sent_at) for d in rows}
    zone_of = {sid: ZONES[name] for name, sid in people.items()}
    # nobody got anything before the start, in their own zone
    assert all(d.sent_at and timing.local_date(d.sent_at, zone_of[d.subscriber_id]) >= START
               for d in rows if d.subscriber_id is not None)  # fmt: skip
    for name, sid in people.items():
        zone = ZONES[name]
        slot, at = sent[(sid, 1)]
        assert slot == _slot(zone, FIRST), name
        assert at is not None and timing.local_date(at, zone) == FIRST, name
        assert shown[name] == (1, slot), name  # the calendar equals the sends
        assert sent[(sid, 2)][0] == _slot(zone, FIRST + dt.timedelta(weeks=1)), name


def test_queued_again_the_start_moves_for_those_who_have_not_had_part_one(
    settings: Settings,
) -> None:
    _drafts(settings)
    sid = add_person(settings, NOW, "Europe/London")
    _queue("--start", START.isoformat(), "--now", NOW.isoformat())
    later = dt.date(2027, 4, 5)
    _queue("--start", later.isoformat(), "--now", (NOW + dt.timedelta(days=1)).isoformat())
    row = enrollments(settings, sid)[0]
    assert (row.state, row.not_before) == (ENROLLED_ACTIVE, later)
    assert row.next_due_at == _slot("Europe/London", dt.date(2027, 4, 6))
    newcomer = add_person(settings, NOW + dt.timedelta(days=2), "Europe/London")
    assert enrollments(settings, newcomer)[0].not_before == later

    _queue("--now", (NOW + dt.timedelta(days=3)).isoformat())  # no start: it is cleared
    with session_scope(settings.database_url) as session:
        assert session.scalars(select(Series.starts_on).where(Series.slug == MYTHS)).one() is None
    for reader in (sid, newcomer):
        row = enrollments(settings, reader)[0]
        assert row.not_before is None
        assert row.next_due_at == _slot("Europe/London", dt.date(2027, 3, 9))


def test_queued_again_a_reader_already_in_the_series_keeps_their_place(
    settings: Settings,
) -> None:
    _drafts(settings)
    sid = add_person(settings, NOW, "Europe/London")
    with session_scope(settings.database_url) as session:
        series_queue.queue_series(session, MYTHS, None, NOW)
    cli_tick(_slot("Europe/London", dt.date(2027, 3, 2)))  # part 1 went out
    _queue("--start", START.isoformat(), "--now", (NOW + dt.timedelta(days=2)).isoformat())
    row = enrollments(settings, sid)[0]
    assert (row.next_part, row.not_before) == (2, None)  # the start is for part 1 only
    assert row.next_due_at == _slot("Europe/London", dt.date(2027, 3, 9))


def test_queued_again_with_the_same_start_reaches_those_who_joined_without_it(
    settings: Settings,
) -> None:
    """Before the start lived on the series, later joiners got none: queueing again mends them."""
    _drafts(settings)
    _queue("--start", START.isoformat(), "--now", NOW.isoformat())
    sid = add_person(settings, NOW, "Europe/London")
    early = _slot("Europe/London", dt.date(2027, 3, 2))
    with session_scope(settings.database_url) as session:  # as the old code enrolled them
        row = session.get(Enrollment, enrollments(settings, sid)[0].id)
        assert row is not None
        row.not_before, row.next_due_at = None, early
    _queue("--start", START.isoformat(), "--now", (NOW + dt.timedelta(hours=1)).isoformat())
    row = enrollments(settings, sid)[0]
    assert (row.not_before, row.next_due_at) == (START, _slot("Europe/London", FIRST))
    assert cli_tick(early)["sent"] == 0


def test_queued_again_a_part_one_already_due_still_goes(settings: Settings) -> None:
    _drafts(settings)
    sid = add_person(settings, NOW, "Europe/London")
    _queue("--now", NOW.isoformat())
    due = _slot("Europe/London", dt.date(2027, 3, 2))
    assert enrollments(settings, sid)[0].next_due_at == due
    _queue("--start", START.isoformat(), "--now", (due + dt.timedelta(minutes=5)).isoformat())
    row = enrollments(settings, sid)[0]
    assert (row.not_before, row.next_due_at) == (None, due)  # the tick is sending it
    assert cli_tick(due + dt.timedelta(minutes=6))["sent"] == 1


def test_queueing_for_everyone_costs_statements_per_batch_not_per_reader(
    settings: Settings,
) -> None:
    """A series queued for every reader placed each one with its own statements (8,810 for 2,000
    readers); now 500 readers a batch share each read and write: 180 readers more cost nothing
    more. Counted, not timed."""
    from engine_support import ship
    from scale_support import add_readers, statements

    now = utc(2027, 1, 4, 12)
    ship(settings, now, queue=False)
    add_readers(settings, now, 20)
    with statements(settings) as few, session_scope(settings.database_url) as session:
        first = series_queue.queue_series(session, "myths-about-psychotherapy", None, now)
    add_readers(settings, now, 180, start=20)
    with statements(settings) as many, session_scope(settings.database_url) as session:
        second = series_queue.queue_series(session, "co-created-process", None, now)
    assert (first.count, second.count) == (14, 146)  # active, taking new series (add_readers)
    assert len(many) <= len(few) + 3, (len(few), len(many))
    assert len(many) < 30


def test_queueing_appends_each_batch_in_one_insert_not_an_executemany(settings: Settings) -> None:
    """The new places of a batch go in by one INSERT … SELECT: an executemany is a statement a
    row on PostgreSQL, and the database's waiting-queue trigger would run once per row (at 77k
    readers it cost the server 1.5 s more). Each reader's place lands after their last one."""
    from engine_support import queues_kept, ship
    from scale_support import add_readers
    from sqlalchemy import event

    from newsletter.store.db import get_engine

    now = utc(2027, 1, 4, 12)
    ship(settings, now, queue=False)
    add_readers(settings, now, 40)
    with session_scope(settings.database_url) as session:
        series_queue.queue_series(session, "myths-about-psychotherapy", None, now)
    inserts: list[bool] = []  # executemany or not, for each INSERT INTO enrollments

    def seen(
        _c: object, _cur: object, statement: str, _p: object, _ctx: object, many: bool
    ) -> None:
        if statement.lstrip().upper().startswith("INSERT INTO ENROLLMENTS"):
            inserts.append(many)

    engine = get_engine(settings.database_url)
    event.listen(engine, "before_cursor_execute", seen)
    try:
        with session_scope(settings.database_url) as session:
            report = series_queue.queue_series(session, "co-created-process", None, now)
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    assert report.count > 20 and inserts == [False]
    queues_kept(settings.database_url)
    with session_scope(settings.database_url) as session:
        places = session.execute(
            select(Enrollment.subscriber_id, Series.slug, Enrollment.position)
            .join(Series, Series.id == Enrollment.series_id)
            .order_by(Enrollment.subscriber_id, Enrollment.position)
        ).all()
    by_reader: dict[int, list[tuple[str, int]]] = {}
    for sid, slug, position in places:
        by_reader.setdefault(sid, []).append((slug, position))
    queued = [p for p in by_reader.values() if len(p) == 2]
    assert len(queued) == report.count
    assert all(p == [("myths-about-psychotherapy", 1), ("co-created-process", 2)] for p in queued)
