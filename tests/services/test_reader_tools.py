"""services.reader_tools: edit, move, skip and send again, each by the engine's rules and each
on the person's activity list; "send again" is one extra ledger row per form key."""

from __future__ import annotations

import datetime as dt

import pytest
from engine_support import add_person, enrollments, ledger, outbox_mails, ship, utc
from sqlalchemy import select

from newsletter.core import schedule_rule as rule
from newsletter.core.config import Settings
from newsletter.engine import schedule
from newsletter.engine.tick import tick
from newsletter.services import reader_tools, roster
from newsletter.services.signup import InvalidInput
from newsletter.store import reader_actions
from newsletter.store.db import session_scope
from newsletter.store.halt import halt
from newsletter.store.ledger import extras
from newsletter.store.models import ENROLLED_ACTIVE, ExtraSend, Subscriber

NOW = utc(2026, 3, 2, 12)  # a Monday
MYTHS = "myths-about-psychotherapy"


def _due(settings: Settings, sub_id: int) -> dt.datetime:
    [due] = [e.next_due_at for e in enrollments(settings, sub_id) if e.state == ENROLLED_ACTIVE]
    assert due is not None
    return due


def _had_two(settings: Settings) -> tuple[dict[str, int], int, dt.datetime]:
    """A reader who got parts 1 and 2 of Myths; and the moment after part 2."""
    ids = ship(settings, NOW)
    sub = add_person(settings, NOW)
    tick(settings, _due(settings, sub))
    at = _due(settings, sub)
    tick(settings, at)
    return ids, sub, at


def _activity(settings: Settings, sub_id: int) -> list[str]:
    with session_scope(settings.database_url) as session:
        return [a.action for a in reader_actions.activity(session, sub_id)]


def test_edit_moves_a_part_not_yet_due_by_the_preference_rule(settings: Settings) -> None:
    ship(settings, NOW)
    sub = add_person(settings, NOW, "Europe/London")
    form = reader_tools.Edit("Anna B", "Asia/Tokyo", "fortnightly", "")
    said = reader_tools.edit(settings, sub, form, NOW)
    assert "time zone Europe/London → Asia/Tokyo" in said and "name Anna → Anna B" in said
    with session_scope(settings.database_url) as session:
        person = session.get(Subscriber, sub)
        assert person is not None
        assert (person.name, person.timezone, person.cadence) == (
            "Anna B",
            "Asia/Tokyo",
            "fortnightly",
        )
        series = session.scalar(select(schedule.Series).where(schedule.Series.slug == MYTHS))
        assert series is not None
        expected = rule.slot_after(
            schedule.reader_of(person), schedule.times_of(series), NOW, None, None
        )
    assert _due(settings, sub) == expected  # the rule's slot in her new zone
    assert _activity(settings, sub) == [reader_actions.EDITED]
    assert reader_tools.edit(settings, sub, form, NOW) == "Nothing changed."
    assert _activity(settings, sub) == [reader_actions.EDITED]


def test_edit_refuses_a_bad_zone_and_a_past_pause_and_changes_nothing(settings: Settings) -> None:
    ship(settings, NOW)
    sub = add_person(settings, NOW)
    with pytest.raises(InvalidInput) as caught:
        reader_tools.edit(
            settings, sub, reader_tools.Edit("A", "Mars/Base", "weekly", "2026-03-01"), NOW
        )
    assert set(caught.value.errors) == {"timezone", "paused_until"}
    assert _activity(settings, sub) == []


def test_a_pause_holds_her_parts_until_the_date(settings: Settings) -> None:
    ship(settings, NOW)
    sub = add_person(settings, NOW)
    reader_tools.edit(
        settings, sub, reader_tools.Edit("Anna", "Europe/London", "weekly", "2026-04-01"), NOW
    )
    assert _due(settings, sub).date() >= dt.date(2026, 4, 1)


def test_send_again_is_one_extra_row_per_click_and_never_her_progress(settings: Settings) -> None:
    ids, sub, at = _had_two(settings)
    before = (
        ledger(settings),
        [(e.series_id, e.next_part, e.next_due_at) for e in enrollments(settings, sub)],
    )
    mails = len(outbox_mails(settings))
    said, ok = reader_tools.send_again(settings, sub, MYTHS, 2, "click-1", at)
    assert ok and said.startswith("Sent part 2")
    again, ok = reader_tools.send_again(settings, sub, MYTHS, 2, "click-1", at)  # double click
    assert ok and again.startswith("Already sent")
    assert len(outbox_mails(settings)) == mails + 1
    after = (
        ledger(settings),
        [(e.series_id, e.next_part, e.next_due_at) for e in enrollments(settings, sub)],
    )
    assert after == before  # the deliveries and her place are untouched
    with session_scope(settings.database_url) as session:
        rows = session.scalars(select(ExtraSend)).all()
        assert [(r.kind, r.subscriber_id, r.series_id, r.part_number, r.status) for r in rows] == [
            (extras.AGAIN, sub, ids[MYTHS], 2, "sent")
        ]
    assert _activity(settings, sub) == [reader_actions.SENT_AGAIN]
    reader_tools.send_again(settings, sub, MYTHS, 2, "click-2", at)  # a new click: a new email
    assert len(outbox_mails(settings)) == mails + 2


def test_send_again_only_a_part_she_had(settings: Settings) -> None:
    _ids, sub, at = _had_two(settings)
    with pytest.raises(reader_tools.ToolError, match="have not had part 3"):
        reader_tools.send_again(settings, sub, MYTHS, 3, "k", at)
    with pytest.raises(reader_tools.ToolError, match="reload the page"):
        reader_tools.send_again(settings, sub, MYTHS, 2, "bad key!", at)


def test_send_again_while_sending_is_stopped_says_so_and_sends_nothing(settings: Settings) -> None:
    _ids, sub, at = _had_two(settings)
    with session_scope(settings.database_url) as session:
        halt(session, "the provider refused the key")
    mails = len(outbox_mails(settings))
    said, ok = reader_tools.send_again(settings, sub, MYTHS, 1, "k1", at)
    assert not ok and "sending is stopped" in said
    assert len(outbox_mails(settings)) == mails
    with session_scope(settings.database_url) as session:
        [row] = extras.extras_of(session, sub)
    assert row.status == "failed" and row.last_error and "not sent" in row.last_error


def test_move_and_skip_are_recorded(settings: Settings) -> None:
    ship(settings, NOW)
    sub = add_person(settings, NOW)
    said = reader_tools.skip(settings, sub, NOW)
    assert said == "Skipped part 1 of “Common Myths About Psychotherapy”."
    with pytest.raises(reader_tools.ToolError, match="no such series"):
        reader_tools.move(settings, sub, "nope", 1, NOW)
    reader_tools.move(settings, sub, "co-created-process", 2, NOW)
    assert _activity(settings, sub) == [reader_actions.MOVED, reader_actions.SKIPPED]


def test_erasing_a_reader_keeps_no_personal_data_on_her_extra_sends(settings: Settings) -> None:
    _ids, sub, at = _had_two(settings)
    reader_tools.send_again(settings, sub, MYTHS, 1, "k1", at)
    with session_scope(settings.database_url) as session:
        assert roster.erase_person(settings, session, sub) is not None
    with session_scope(settings.database_url) as session:
        [row] = session.scalars(select(ExtraSend)).all()
        assert (row.subscriber_id, row.provider_message_id, row.last_error) == (None, None, None)


def test_an_unsubscribed_reader_is_neither_moved_nor_sent_a_part_again(settings: Settings) -> None:
    _ids, sub, at = _had_two(settings)
    with session_scope(settings.database_url) as session:
        assert roster.unsubscribe_person(settings, session, sub)
    with pytest.raises(reader_tools.ToolError, match="Only an active reader"):
        reader_tools.send_again(settings, sub, MYTHS, 1, "k1", at)
    with pytest.raises(reader_tools.ToolError, match="Only an active reader"):
        reader_tools.move(settings, sub, "co-created-process", 1, at)
    with session_scope(settings.database_url) as session:
        assert extras.extras_of(session, sub) == []
