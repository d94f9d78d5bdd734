"""`subscribers add --confirmed`: its "first article" line is the confirmation page's date."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from engine_support import add_person, ship, utc
from sqlalchemy import select
from typer.testing import CliRunner
from web_helpers import client

from newsletter.cli import app
from newsletter.content.letter import letter
from newsletter.core import timing, tokens
from newsletter.core.config import Settings
from newsletter.engine import schedule
from newsletter.services import broadcasts, calendar, preferences, signup
from newsletter.store.db import session_scope
from newsletter.store.models import Subscriber
from newsletter.web import dates

MONDAY = utc(2027, 3, 1, 11, 30)  # 00:30 Tuesday in Auckland, 01:30 Monday in Honolulu


def _page_date(settings: Settings, public_id: str) -> str:
    """The first date the confirmation page shows (an active reader's confirm link)."""
    page = client(settings).get(
        f"/confirm/{tokens.make_token(settings.secret, 'confirm', public_id)}"
    )
    assert page.status_code == 200
    return page.text.split('id="first-article"><time>')[1].split("</time>")[0]


def test_the_cli_line_and_the_confirmation_page_show_one_date(
    settings: Settings, time_machine
) -> None:
    time_machine.move_to(MONDAY, tick=False)
    ship(settings, MONDAY)
    result = CliRunner().invoke(
        app, ["subscribers", "add", "ada@example.org", "--tz", "Pacific/Auckland", "--confirmed"]
    )
    assert result.exit_code == 0, result.output
    with session_scope(settings.database_url) as session:
        sub = session.scalar(select(Subscriber).where(Subscriber.email == "ada@example.org"))
        when = calendar.next_date(session, sub, MONDAY)
        public_id = sub.public_id
    assert when is not None
    assert timing.describe(when, "Pacific/Auckland") in " ".join(result.output.split())
    assert _page_date(settings, public_id) == dates.format_moment(when, "Pacific/Auckland")


def test_the_first_date_is_the_rules_not_the_stored_due_time(
    settings: Settings, time_machine
) -> None:
    # A broadcast on the reader's send day, then a pause over it: the letter is not sent (a
    # paused reader's letter is cancelled when it comes due), so the first date is the part
    # after the pause, though the broadcast's due time is still stored.
    time_machine.move_to(MONDAY, tick=False)
    ship(settings, MONDAY)
    sid = add_person(settings, MONDAY, "Pacific/Honolulu")
    with session_scope(settings.database_url) as session:
        sub = session.get(Subscriber, sid)
        slot = schedule.first_article_at(session, sub)
    assert slot is not None
    day = timing.local_date(slot, "Pacific/Honolulu")
    note = letter("A note", "Details.", "A note for everyone.\n")
    when = broadcasts.parse_when(day.isoformat(), settings, MONDAY)
    broadcasts.create(
        settings, note, broadcasts.parse_audience("all"), when, in_archive=False, now=MONDAY
    )
    with session_scope(settings.database_url) as session:
        sub = session.get(Subscriber, sid)
        prefs = preferences.Preferences(
            series_slugs=signup.chosen_series(session, sub),
            cadence=sub.cadence,
            paused_until=day + dt.timedelta(days=3),
            timezone=sub.timezone,
            name=sub.name,
            takes_new_series=sub.takes_new_series,
        )
        preferences.update_preferences(session, sub, prefs, MONDAY)  # the reader's own save
        stored = schedule.first_article_at(session, sub)
        first = calendar.next_date_of(session, sid, MONDAY)
        shown = calendar.next_date(session, sub, MONDAY)
        public_id = sub.public_id
    assert first is not None and first[0] is not None and first[0] == shown
    assert timing.local_date(first[0], "Pacific/Honolulu") >= day + dt.timedelta(days=3)
    assert stored is not None and timing.local_date(stored, "Pacific/Honolulu") == day
    assert _page_date(settings, public_id) == dates.format_moment(first[0], "Pacific/Honolulu")
    with session_scope(settings.database_url) as session:
        assert calendar.next_date_of(session, sid + 1000, MONDAY) is None


def test_import_reads_another_tools_export_and_maps_its_tags(settings: Settings) -> None:
    """`subscribers import` names the tool and what each column became; --map-tag makes a tag
    a series choice, and a --map-tag without = is refused."""
    ship(settings, MONDAY)
    fixture = Path(__file__).resolve().parents[1] / "corpus" / "csv" / "sources" / "kit.csv"
    refused = CliRunner().invoke(app, ["subscribers", "import", str(fixture), "--map-tag", "x"])
    assert refused.exit_code != 0 and "TAG=SERIES-SLUG" in refused.output
    result = CliRunner().invoke(
        app,
        ["subscribers", "import", str(fixture), "--map-tag", "Grief=myths-about-psychotherapy"],
        env={"COLUMNS": "200"},
    )
    assert result.exit_code == 0, result.output
    assert "Kit" in result.output and "email_address" in result.output
    with session_scope(settings.database_url) as session:
        kim = session.scalar(select(Subscriber).where(Subscriber.email == "kim@example.org"))
        assert kim is not None and kim.requested_series == ["myths-about-psychotherapy"]
