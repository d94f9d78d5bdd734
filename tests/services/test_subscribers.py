"""Subscriber lifecycle: signup, consent, double opt-in, preferences, unsubscribe, resubscribe."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import event, select
from web_helpers import add_series, outbox

from newsletter.core import tokens
from newsletter.core.identity import PUBLIC_ID
from newsletter.engine import schedule
from newsletter.engine.reconcile import reconcile
from newsletter.engine.tick import tick
from newsletter.services import mailing, people, preferences, roster
from newsletter.services import signup as signups
from newsletter.store.db import get_engine, session_scope
from newsletter.store.models import (
    ACTIVE,
    BOUNCED,
    CANCELLED,
    COMPLAINED,
    ENROLLED_ACTIVE,
    FORTNIGHTLY,
    PENDING,
    QUEUED,
    SENT,
    UNSUBSCRIBED,
    Delivery,
    Enrollment,
    Series,
    Subscriber,
    Suppression,
)

NOW = dt.datetime(2026, 3, 2, 12, 0, tzinfo=dt.UTC)  # a Monday


@pytest.fixture
def two_series(settings):
    add_series(settings, "myths", "Common myths", parts=4, order=1, send_day=1)
    add_series(settings, "together", "Working together", parts=2, order=2, send_day=3)
    return settings


def signup(session, email="anna@example.org", **kw):
    args = {
        "name": "Anna",
        "timezone": "Europe/London",
        "series_slugs": None,
        "ip": "203.0.113.9",
        "form": "signup",
        "now": NOW,
        "secret": "a test secret key",
    }
    args.update(kw)
    return signups.subscribe(session, email, **args)


def enrollments_of(session, sub):
    rows = session.execute(
        select(Series.slug, Enrollment)
        .join(Enrollment, Enrollment.series_id == Series.id)
        .where(Enrollment.subscriber_id == sub.id)
        .order_by(Enrollment.position)
    ).all()
    return {slug: e for slug, e in rows}


def test_signup_records_pending_subscriber_with_consent(two_series):
    with session_scope(two_series.database_url) as s:
        result = signup(s, "  Anna.Smith@Example.ORG ")
        assert result.created and result.send_confirmation
        sub = result.subscriber
        assert sub.status == PENDING
        assert sub.email == "Anna.Smith@example.org"  # domain normalised, local part kept
        assert sub.email_key == "anna.smith@example.org"
        assert sub.consent_at == NOW
        assert sub.consent_ip == "203.0.113.9"
        assert sub.consent_form == "signup"
        assert sub.consent_method == "form"
        assert sub.consent_wording == signups.CONSENT_WORDING
        assert PUBLIC_ID.fullmatch(sub.public_id)  # the one format (core.identity)
        assert sub.confirmed_at is None


def test_internationalised_addresses_are_accepted(two_series):
    with session_scope(two_series.database_url) as s:
        sub = signup(s, "jürgen@bücher.example").subscriber
        assert sub.email == "jürgen@bücher.example"


@pytest.mark.parametrize(
    "bad", ["", "anna", "anna@", "@example.org", "a b@example.org", "anna@@x.org"]
)
def test_malformed_addresses_are_refused(two_series, bad):
    with session_scope(two_series.database_url) as s, pytest.raises(signups.InvalidInput) as exc:
        signup(s, bad)
    assert set(exc.value.errors) == {"email"}


def test_every_bad_field_is_reported_at_once(two_series):
    with session_scope(two_series.database_url) as s, pytest.raises(signups.InvalidInput) as exc:
        signup(s, "nope", name="x" * 101, timezone="Mars/Olympus", series_slugs=["unknown"])
    assert set(exc.value.errors) == {"email", "name", "timezone", "series"}


def test_empty_zone_falls_back_to_default_and_no_series_chosen_is_refused(two_series):
    with session_scope(two_series.database_url) as s:
        sub = signup(s, timezone="", default_timezone="America/New_York").subscriber
        assert sub.timezone == "America/New_York"
        with pytest.raises(signups.InvalidInput) as exc:
            signup(s, "b@example.org", series_slugs=[])
        assert "series" in exc.value.errors


def test_repeated_signup_creates_no_duplicate(two_series):
    with session_scope(two_series.database_url) as s:
        first = signup(s, "anna@example.org", series_slugs=["myths"]).subscriber
        again = signup(s, "ANNA@example.org", name="Anna B", series_slugs=["together"])
        assert not again.created and again.send_confirmation
        assert again.subscriber.id == first.id
        assert s.scalar(select(Subscriber.id).where(Subscriber.id != first.id)) is None


def test_unconfirmed_resubmission_changes_no_stored_field_of_a_pending_person(two_series):
    # anyone can type an address into the form: "Hi Attacker name" must never reach Anna
    with session_scope(two_series.database_url) as s:
        sub = signup(s, series_slugs=["myths"]).subscriber
        again = signup(
            s,
            name="Attacker name",
            timezone="Asia/Tokyo",
            series_slugs=["together"],
            ip="198.51.100.66",
            form="resend",
            now=NOW + dt.timedelta(hours=1),
        )
        assert again.send_confirmation and again.subscriber.id == sub.id
        assert (sub.name, sub.timezone, sub.requested_series) == (
            "Anna",
            "Europe/London",
            ["myths"],
        )
        assert (sub.consent_at, sub.consent_ip, sub.consent_form) == (NOW, "203.0.113.9", "signup")


def test_signup_of_active_or_complained_address_sends_nothing(two_series):
    with session_scope(two_series.database_url) as s:
        sub = signup(s).subscriber
        signups.confirm(s, sub, NOW)
        confirmed_at = sub.confirmed_at
        again = signup(s, name="Someone else", timezone="Asia/Tokyo")
        assert not again.send_confirmation
        assert sub.name == "Anna" and sub.timezone == "Europe/London"  # nothing changed
        assert sub.confirmed_at == confirmed_at
        sub.status = COMPLAINED
        assert not signup(s).send_confirmation


def test_confirm_activates_and_enrolls_chosen_series(two_series):
    with session_scope(two_series.database_url) as s:
        sub = signup(s, series_slugs=["together"]).subscriber
        assert signups.confirm(s, sub, NOW)
        assert sub.status == ACTIVE and sub.confirmed_at == NOW
        assert sub.requested_series is None
        rows = enrollments_of(s, sub)
        assert list(rows) == ["together"]
        assert rows["together"].state == ENROLLED_ACTIVE
        # Thursday 09:00 in London, strictly after the Monday noon confirmation
        first = signups.first_article_text(s, sub, NOW)
        assert first == "Thursday 5 March 2026 at 09:00 (Europe/London)"
        assert not signups.confirm(s, sub, NOW)  # idempotent


def test_confirm_with_all_series_enrolls_in_queue_order(two_series):
    with session_scope(two_series.database_url) as s:
        sub = signup(s).subscriber
        signups.confirm(s, sub, NOW)
        rows = enrollments_of(s, sub)
        assert list(rows) == ["myths", "together"]
        assert rows["myths"].state == ENROLLED_ACTIVE
        assert rows["together"].state == QUEUED


def test_unsubscribe_is_immediate_and_idempotent(two_series):
    with session_scope(two_series.database_url) as s:
        sub = signup(s).subscriber
        signups.confirm(s, sub, NOW)
        later = NOW + dt.timedelta(hours=1)
        assert preferences.unsubscribe(s, sub, later)
        assert sub.status == UNSUBSCRIBED and sub.unsubscribed_at == later
        assert all(e.next_due_at is None for e in enrollments_of(s, sub).values())
        assert not preferences.unsubscribe(s, sub, later + dt.timedelta(hours=1))
        assert sub.unsubscribed_at == later


def test_resubscribe_resumes_where_left_off(two_series):
    with session_scope(two_series.database_url) as s:
        sub = signup(s).subscriber
        signups.confirm(s, sub, NOW)
        myths = enrollments_of(s, sub)["myths"]
        myths.next_part = 3  # parts 1 and 2 went out
        preferences.unsubscribe(s, sub, NOW + dt.timedelta(days=15))
        back = NOW + dt.timedelta(days=30)
        assert signups.resubscribe(s, sub, back)
        assert sub.status == ACTIVE
        myths = enrollments_of(s, sub)["myths"]
        assert myths.next_part == 3 and myths.state == ENROLLED_ACTIVE
        assert myths.next_due_at is not None and myths.next_due_at > back
        assert not signups.resubscribe(s, sub, back)  # already active


def test_signup_again_after_unsubscribing_needs_confirmation(two_series):
    with session_scope(two_series.database_url) as s:
        sub = signup(s).subscriber
        signups.confirm(s, sub, NOW)
        preferences.unsubscribe(s, sub, NOW)
        later = NOW + dt.timedelta(days=1)
        again = signup(s, ip="198.51.100.7", form="resend", name="Someone", now=later)
        assert again.send_confirmation and sub.status == UNSUBSCRIBED
        # the unconfirmed submission leaves the stored consent record as it was
        assert (sub.consent_at, sub.consent_ip, sub.consent_form) == (NOW, "203.0.113.9", "signup")
        assert sub.name == "Anna"
        back = NOW + dt.timedelta(days=2)
        assert signups.confirm(s, sub, back, ip="198.51.100.8")
        assert sub.status == ACTIVE
        # the new consent is recorded when they confirm
        assert (sub.consent_at, sub.consent_ip, sub.consent_form) == (
            back,
            "198.51.100.8",
            "confirm",
        )


def test_preferences_change_cadence_pause_series_zone_and_name(two_series):
    with session_scope(two_series.database_url) as s:
        sub = signup(s).subscriber
        signups.confirm(s, sub, NOW)
        weekly_due = enrollments_of(s, sub)["myths"].next_due_at
        prefs = preferences.Preferences(
            series_slugs=["together"],
            cadence=FORTNIGHTLY,
            paused_until=dt.date(2026, 4, 1),
            timezone="America/Chicago",
            name="Annie",
            takes_new_series=False,
        )
        preferences.update_preferences(s, sub, prefs, NOW)
        assert (sub.cadence, sub.timezone, sub.name) == (FORTNIGHTLY, "America/Chicago", "Annie")
        assert sub.paused_until == dt.date(2026, 4, 1) and not sub.takes_new_series
        rows = enrollments_of(s, sub)
        assert rows["myths"].state == CANCELLED and rows["myths"].next_due_at is None
        assert rows["together"].state == ENROLLED_ACTIVE
        due = rows["together"].next_due_at
        assert due is not None and due != weekly_due
        assert due.date() >= dt.date(2026, 4, 1)  # not before the pause ends
        # choosing the series again puts it back (it resumes at its next part)
        prefs.series_slugs = ["myths", "together"]
        preferences.update_preferences(s, sub, prefs, NOW)
        assert enrollments_of(s, sub)["myths"].state in (QUEUED, ENROLLED_ACTIVE)


def test_preferences_of_pending_subscriber_are_kept_for_confirmation(two_series):
    with session_scope(two_series.database_url) as s:
        sub = signup(s).subscriber
        prefs = preferences.Preferences(series_slugs=["together"], timezone="Asia/Tokyo")
        preferences.update_preferences(s, sub, prefs, NOW)
        assert sub.requested_series == ["together"] and enrollments_of(s, sub) == {}
        signups.confirm(s, sub, NOW)
        assert list(enrollments_of(s, sub)) == ["together"]


def test_pause_validation():
    today = dt.date(2026, 3, 2)
    assert preferences.valid_pause("", today) is None
    for past in ("2026-03-01", today.isoformat()):  # refused, not silently "no pause"
        with pytest.raises(signups.InvalidInput, match="already come"):
            preferences.valid_pause(past, today)
    assert preferences.valid_pause("2026-03-20", today) == dt.date(2026, 3, 20)
    with pytest.raises(signups.InvalidInput):
        preferences.valid_pause("20/03/2026", today)
    with pytest.raises(signups.InvalidInput):
        preferences.valid_pause("2028-01-01", today)


def test_send_confirmation_writes_mail_with_signed_links(two_series):
    with session_scope(two_series.database_url) as s:
        sub = signup(s).subscriber
    outcome = mailing.send_confirmation(two_series, sub)
    assert outcome.sent == 1 and outcome.halted is None
    (mail,) = outbox(two_series)
    assert mail.to.endswith("<anna@example.org>") or mail.to == "anna@example.org"
    assert "anna" not in mail.subject.lower()
    token = mail.link("confirm").split("/")[-1]
    assert tokens.read_token(two_series.secret, "confirm", token) == sub.public_id
    assert "anna@example.org" not in mail.link("confirm")


def test_erased_address_is_never_stored_or_mailed_again(two_series):
    from newsletter.core.identity import email_hash

    with session_scope(two_series.database_url) as s:
        s.add(Suppression(email_hash=email_hash("gone@example.org"), reason="erased"))
        s.flush()
        result = signup(s, "Gone@Example.org")
        assert result.subscriber is None and not result.send_confirmation
        assert people.by_email(s, "gone@example.org") is None


# --- preference saves against due parts (schedule.reschedule, through update_preferences) ----
# Anna (Europe/London) confirms on Monday 2 March 2026: "myths" part 1 goes out on Tuesday
# 3 March 09:00 UTC through a real tick (outbox backend, real Redis); part 2 is due 10 March.

PART_1 = dt.datetime(2026, 3, 3, 9, 0, tzinfo=dt.UTC)
PART_2 = dt.datetime(2026, 3, 10, 9, 0, tzinfo=dt.UTC)
DUE_NOW = PART_2 + dt.timedelta(seconds=30)
WEDNESDAY = dt.datetime(2026, 3, 4, 12, 0, tzinfo=dt.UTC)  # part 2 not yet due


def utc(*args):
    return dt.datetime(*args, tzinfo=dt.UTC)


def confirmed_after_part_1(settings):
    with session_scope(settings.database_url) as s:
        sub = signup(s).subscriber
        signups.confirm(s, sub, NOW)
        sid, ids = sub.id, people.enrollment_ids(s, sub)
    people.sync_queue(settings, ids)
    assert tick(settings, PART_1).sent == 1
    assert sent_parts(settings) == [1]
    return sid


def save(settings, sid, now, **changes):
    """The preference centre's path: a full set of choices (the current ones with `changes`),
    update_preferences, commit, then sync_queue. Returns the next due time."""
    with session_scope(settings.database_url) as s:
        sub = s.get(Subscriber, sid)
        prefs = preferences.Preferences(
            series_slugs=signups.chosen_series(s, sub),
            cadence=sub.cadence,
            paused_until=sub.paused_until,
            timezone=sub.timezone,
            name=sub.name,
            takes_new_series=sub.takes_new_series,
        )
        for name, value in changes.items():
            setattr(prefs, name, value)
        preferences.update_preferences(s, sub, prefs, now)
        ids = people.enrollment_ids(s, sub)
        due = schedule.first_article_at(s, sub)
    people.sync_queue(settings, ids)
    return due


def sent_parts(settings):
    with session_scope(settings.database_url) as s:
        return list(
            s.scalars(
                select(Delivery.part_number).where(Delivery.status == SENT).order_by(Delivery.id)
            )
        )


@pytest.mark.parametrize("zone", ["Asia/Tokyo", "America/Los_Angeles"])
def test_new_time_zone_saved_over_a_due_part_keeps_it_due_and_the_next_tick_sends_it(
    two_series, zone
):
    """(a)"""
    sid = confirmed_after_part_1(two_series)
    assert save(two_series, sid, DUE_NOW, timezone=zone) == PART_2
    assert tick(two_series, DUE_NOW).sent == 1
    assert sent_parts(two_series) == [1, 2]
    assert [m.subject for m in outbox(two_series)][-1].endswith("part 2")


def test_fortnightly_saved_over_a_due_part_keeps_it_due(two_series):
    """(b)"""
    sid = confirmed_after_part_1(two_series)
    assert save(two_series, sid, DUE_NOW, cadence=FORTNIGHTLY) == PART_2
    assert tick(two_series, DUE_NOW).sent == 1
    with session_scope(two_series.database_url) as s:  # fortnightly from here on
        assert enrollments_of(s, s.get(Subscriber, sid))["myths"].next_due_at == utc(
            2026, 3, 24, 9, 0
        )


@pytest.mark.parametrize(
    ("zone", "expected"),
    [("America/New_York", utc(2026, 3, 10, 13, 0)), ("Asia/Tokyo", utc(2026, 3, 10, 0, 0))],
)
def test_new_time_zone_moves_a_part_not_yet_due_to_that_zones_slot(two_series, zone, expected):
    """(c) 09:00 on Tuesday 10 March in the new zone (New York is on EDT since 8 March)."""
    sid = confirmed_after_part_1(two_series)
    assert save(two_series, sid, WEDNESDAY, timezone=zone) == expected
    assert tick(two_series, expected - dt.timedelta(minutes=1)).sent == 0
    assert tick(two_series, expected).sent == 1


def test_cadence_saved_before_the_part_is_due_counts_from_the_last_part_sent(two_series):
    """(d) Part 1 on 3 March + two weeks = 17 March (not Wednesday + two weeks)."""
    sid = confirmed_after_part_1(two_series)
    assert save(two_series, sid, WEDNESDAY, cadence=FORTNIGHTLY) == utc(2026, 3, 17, 9, 0)
    assert tick(two_series, DUE_NOW).sent == 0  # the old weekly slot sends nothing


def test_pause_saved_over_a_due_part_moves_it_to_the_first_slot_after_the_pause(two_series):
    """(e) Paused until Thursday 2 April: the first Tuesday on/after it, 09:00 BST."""
    sid = confirmed_after_part_1(two_series)
    after_pause = utc(2026, 4, 7, 8, 0)
    assert save(two_series, sid, DUE_NOW, paused_until=dt.date(2026, 4, 2)) == after_pause
    assert tick(two_series, DUE_NOW).sent == 0
    assert tick(two_series, after_pause).sent == 1
    assert sent_parts(two_series) == [1, 2]


def test_long_pause_ends_with_one_part_then_one_per_week(two_series):
    """(f) Paused from 4 March until 2 June: the slots that passed meanwhile send nothing, then
    one part at the first slot of June and the next a week later, never two at once."""
    sid = confirmed_after_part_1(two_series)
    june = utc(2026, 6, 2, 8, 0)  # Tuesday 09:00 BST
    assert save(two_series, sid, WEDNESDAY, paused_until=dt.date(2026, 6, 2)) == june
    for week in range(1, 13):
        assert tick(two_series, PART_1 + dt.timedelta(weeks=week, hours=1)).sent == 0
    assert tick(two_series, june).sent == 1
    for later in (june + dt.timedelta(hours=1), june + dt.timedelta(days=1)):
        reconcile(two_series, later)
        assert tick(two_series, later).sent == 0
    assert tick(two_series, june + dt.timedelta(weeks=1)).sent == 1
    assert sent_parts(two_series) == [1, 2, 3]


def test_clearing_the_pause_date_resumes_at_the_next_slot(two_series):
    """(g) Paused until 2 June, cleared on Thursday 23 April: part 2 on Tuesday 28 April
    (09:00 BST), not at once and not in June."""
    sid = confirmed_after_part_1(two_series)
    save(two_series, sid, WEDNESDAY, paused_until=dt.date(2026, 6, 2))
    cleared = utc(2026, 4, 23, 10, 0)
    assert save(two_series, sid, cleared, paused_until=None) == utc(2026, 4, 28, 8, 0)
    assert tick(two_series, cleared).sent == 0
    assert tick(two_series, utc(2026, 4, 28, 8, 0)).sent == 1
    assert sent_parts(two_series) == [1, 2]


# --- the same work for a new and a known address -------------------------------------------

WRITES = {"INSERT": "write", "UPDATE": "write", "DELETE": "write"}


def _statements_of_signup(settings, email):
    """What one signup costs in the database, the web's way (its own session, committed):
    statement verbs (INSERT and UPDATE alike: one write) and commits."""
    engine = get_engine(settings.database_url)
    seen = []

    def statement(conn, cursor, sql, params, context, executemany):
        verb = sql.split(None, 1)[0].upper()
        seen.append(WRITES.get(verb, verb))

    def commit(conn):
        seen.append("commit")

    event.listen(engine, "before_cursor_execute", statement)
    event.listen(engine, "commit", commit)
    try:
        with session_scope(settings.database_url) as s:
            result = signup(s, email, secret=settings.secret)
    finally:
        event.remove(engine, "before_cursor_execute", statement)
        event.remove(engine, "commit", commit)
    return seen, result


def test_signup_does_the_same_database_work_for_a_new_and_a_known_address(two_series):
    settings = two_series
    statuses = {
        "pending@example.org": PENDING,
        "active@example.org": ACTIVE,
        "gone@example.org": UNSUBSCRIBED,
        "bounced@example.org": BOUNCED,
        "spam@example.org": COMPLAINED,
    }
    for email, status in statuses.items():
        with session_scope(settings.database_url) as s:
            signup(s, email, secret=settings.secret).subscriber.status = status
    roster.erase_email(settings, "erased@example.org")
    with session_scope(settings.database_url) as s:
        kept = {sub.email: (sub.updated_at, sub.status) for sub in s.scalars(select(Subscriber))}
    costs = {}
    for email in ["first-new@example.org", *statuses, "erased@example.org", "new@example.org"]:
        costs[email], result = _statements_of_signup(settings, email)
        assert result.email_key == email
    new = costs["new@example.org"]
    assert new.count("write") == 1 and "SAVEPOINT" in new  # the INSERT of the new row
    assert {email: cost for email, cost in costs.items() if cost != new} == {}
    with session_scope(settings.database_url) as s:  # the known rows' writes changed nothing
        got = {sub.email: (sub.updated_at, sub.status) for sub in s.scalars(select(Subscriber))}
        assert {k: v for k, v in got.items() if k in kept} == kept
        assert people.by_email(s, "erased@example.org") is None
