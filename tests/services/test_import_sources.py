"""Imports from the tools a practice leaves: one test a tool from its fixture (people, names,
zones, series choices, consent evidence, suppressions), and the dry run's column report."""

from __future__ import annotations

import csv
import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from newsletter.content import series as content
from newsletter.core.config import Settings
from newsletter.engine import series_queue
from newsletter.services import import_sources, importing
from newsletter.services.person_fields import RosterError
from newsletter.store import series as series_store
from newsletter.store.db import session_scope
from newsletter.store.models import Enrollment, Series, Subscriber

NOW = dt.datetime(2026, 3, 2, 12, 0, tzinfo=dt.UTC)
SOURCES = Path(__file__).resolve().parents[1] / "corpus" / "csv" / "sources"
MYTHS, PROCESS = "myths-about-psychotherapy", "co-created-process"
EVERY = {MYTHS, PROCESS}


@pytest.fixture
def live(settings: Settings) -> Settings:
    """The shipped series synced and queued (live), like a fresh `newsletter init`."""
    with session_scope(settings.database_url) as session:
        series_store.sync(session, content.load_all(settings.schedules_dir))
        for slug in session.scalars(select(Series.slug).order_by(Series.order)):
            series_queue.queue_series(session, slug, None, NOW)
    return settings


def imported(
    settings: Settings, fixture: str, *, tags: dict[str, str] | None = None, **options: Any
) -> tuple[importing.ImportReport, dict[str, dict[str, Any]]]:
    """Check the fixture, then import it; the real report and each person as stored."""
    path = SOURCES / fixture
    dry = importing.import_csv(settings, path, dry_run=True, now=NOW, tag_series=tags, **options)
    done = importing.import_csv(settings, path, dry_run=False, now=NOW, tag_series=tags, **options)
    assert (dry.new, dry.states, dry.source, dry.columns) == (
        done.new,
        done.states,
        done.source,
        done.columns,
    )
    with session_scope(settings.database_url) as session:
        people = {}
        for sub in session.scalars(select(Subscriber)):
            series = set(
                session.scalars(
                    select(Series.slug)
                    .join(Enrollment, Enrollment.series_id == Series.id)
                    .where(Enrollment.subscriber_id == sub.id)
                )
            )
            people[sub.email] = {
                "name": sub.name,
                "zone": sub.timezone,
                "status": sub.status,
                "series": series,
                "method": sub.consent_method,
                "at": _naive(sub.consent_at),
                "ip": sub.consent_ip,
                "left": _naive(sub.unsubscribed_at),
            }
    return done, people


def _naive(moment: dt.datetime | None) -> dt.datetime | None:
    return None if moment is None else moment.replace(tzinfo=None)


def _columns(fixture: str) -> list[str]:
    with (SOURCES / fixture).open(encoding="utf-8") as handle:
        return next(csv.reader(handle))


def test_every_fixture_is_recognised_and_its_report_names_every_column(live: Settings) -> None:
    names = {}
    for path in sorted(SOURCES.glob("*.csv")):
        report = importing.import_csv(live, path, dry_run=True, now=NOW)
        names[path.stem] = report.source
        assert [column for column, _ in report.columns] == _columns(path.name)
        ignored = [column for column, became in report.columns if became == "ignored"]
        assert report.ignored_columns == ignored
    assert names == {
        "buttondown": "Buttondown",
        "ghost": "Ghost",
        "kit": "Kit",
        "listmonk": "listmonk",
        "mailchimp_cleaned": "Mailchimp (cleaned)",
        "mailchimp_subscribed": "Mailchimp",
        "mailchimp_unsubscribed": "Mailchimp (unsubscribed)",
        "mailerlite": "MailerLite",
        "substack": "Substack",
    }


def test_mailchimp_subscribed_keeps_names_zones_tags_and_consent(live: Settings) -> None:
    report, people = imported(live, "mailchimp_subscribed.csv", tags={"Grief": MYTHS})
    assert report.tags == {"Anxiety": 1, "Grief": 2, "Newsletter": 1}
    became = dict(report.columns)
    assert became["First Name"] == became["Last Name"] == "name (first and last joined)"
    assert became["CONFIRM_IP"] == "consent: from where (IP address)"
    assert became["OPTIN_IP"] == "consent: from where (IP address) (where CONFIRM_IP is empty)"
    assert became["MEMBER_RATING"] == "ignored"
    ana, ben, cara, dee = (people[f"{n}@example.org"] for n in ("ana", "ben", "cara", "dee"))
    assert (ana["name"], ana["zone"], ana["status"], ana["series"]) == (
        "Ana Lima",
        "Europe/Lisbon",
        "active",
        {MYTHS},
    )
    assert (ana["method"], ana["at"], ana["ip"]) == (
        "imported from Mailchimp",
        dt.datetime(2023, 5, 14, 16, 20, 11),
        "192.0.2.10",
    )
    assert (ben["name"], ben["zone"], ben["series"]) == ("Ben", "America/New_York", {MYTHS})
    # no confirmation: the sign-up time and address stand; an unknown zone is the default
    zone = live.default_timezone
    assert (cara["ip"], cara["zone"], cara["series"]) == ("203.0.113.9", zone, EVERY)
    assert cara["at"] == dt.datetime(2021, 1, 9, 12, 0)
    # no evidence at all: as a plain list (pending, a confirmation email), only a last name
    assert (dee["name"], dee["status"], dee["method"]) == ("Quinn", "pending", "import")


def test_mailchimp_unsubscribed_rows_are_suppressions_not_readers(live: Settings) -> None:
    report, people = imported(live, "mailchimp_unsubscribed.csv", confirmed=True)
    assert report.states == {"unsubscribed": 2}
    eli = people["eli@example.org"]
    assert (eli["status"], eli["series"], eli["left"]) == (
        "unsubscribed",
        set(),
        dt.datetime(2024, 1, 15, 18, 30),
    )
    assert people["fay@example.org"]["status"] == "unsubscribed"


def test_a_mailchimp_cleaned_row_never_becomes_a_reader(live: Settings) -> None:
    # even with "they consented elsewhere" ticked and its tag mapped
    report, people = imported(live, "mailchimp_cleaned.csv", confirmed=True, tags={"Grief": MYTHS})
    gus = people["gus@example.org"]
    assert report.states == {"bounced": 1}
    assert (gus["status"], gus["series"], gus["name"]) == ("bounced", set(), "Gus Reyes")
    assert dict(report.columns)["CLEAN_TIME"].startswith("every row bounced")


def test_substack(live: Settings) -> None:
    report, people = imported(live, "substack.csv")
    assert report.states == {"active": 2, "unsubscribed": 1}
    hana = people["hana@example.org"]
    assert (hana["status"], hana["method"], hana["at"], hana["series"]) == (
        "active",
        "imported from Substack",
        dt.datetime(2023, 2, 10, 8, 15, 30, 120000),
        EVERY,
    )
    assert people["jo@example.org"]["status"] == "unsubscribed"
    assert dict(report.columns)["created_at"] == "consent: when they confirmed; joined"


def test_kit(live: Settings) -> None:
    report, people = imported(live, "kit.csv", tags={"Anxiety": PROCESS})
    assert report.tags == {"Grief": 2, "Anxiety": 1}
    statuses = {email.split("@")[0]: p["status"] for email, p in people.items()}
    assert statuses == {
        "kim": "active",
        "lou": "pending",
        "max": "unsubscribed",
        "ned": "bounced",
        "oda": "complained",
    }
    kim = people["kim@example.org"]
    assert (kim["name"], kim["series"], kim["method"]) == ("Kim", {PROCESS}, "imported from Kit")
    assert people["max@example.org"]["series"] == set()


def test_buttondown(live: Settings) -> None:
    report, people = imported(live, "buttondown.csv", tags={"grief": MYTHS})
    assert report.tags == {"grief": 1, "anxiety": 1}
    assert people["pia@example.org"]["series"] == {MYTHS}
    assert people["pia@example.org"]["at"] == dt.datetime(2023, 6, 1, 9, 0)
    assert {e: p["status"] for e, p in people.items() if not e.startswith("pia")} == {
        "quin@example.org": "pending",
        "rae@example.org": "unsubscribed",
        "sol@example.org": "bounced",
    }


def test_mailerlite(live: Settings) -> None:
    report, people = imported(live, "mailerlite.csv", tags={"Grief": MYTHS, "Newsletter": PROCESS})
    tess = people["tess@example.org"]
    assert (tess["name"], tess["series"], tess["at"], tess["ip"]) == (
        "Tess Moreau",
        EVERY,
        dt.datetime(2023, 3, 3, 10, 4),
        "192.0.2.33",
    )
    assert report.states == {"active": 1, "pending": 1, "unsubscribed": 1, "complained": 1}
    assert people["wyn@example.org"]["status"] == "complained"
    assert people["vic@example.org"]["left"] == dt.datetime(2024, 5, 5, 12, 0)


def test_ghost(live: Settings) -> None:
    report, people = imported(live, "ghost.csv", tags={"Workshop 2022": PROCESS})
    xia, yves = people["xia@example.org"], people["yves@example.org"]
    assert (xia["name"], xia["status"], xia["series"], xia["method"]) == (
        "Xia Chen",
        "active",
        {PROCESS},
        "imported from Ghost",
    )
    assert (yves["status"], yves["series"]) == ("unsubscribed", set())
    assert dict(report.columns)["note"] == "ignored"


def test_listmonk(live: Settings) -> None:
    report, people = imported(live, "listmonk.csv")
    zed = people["zed@example.org"]
    assert (zed["name"], zed["status"], zed["at"]) == (
        "Zed Ortiz",
        "active",
        dt.datetime(2023, 5, 14, 16, 20, 11, 123456),
    )
    assert people["amy@example.org"]["status"] == "unsubscribed"
    assert dict(report.columns)["attributes"] == "ignored"


def test_a_tag_mapped_to_a_series_that_does_not_exist_refuses_the_file(live: Settings) -> None:
    with pytest.raises(RosterError, match="no-such-series"):
        importing.import_csv(
            live,
            SOURCES / "kit.csv",
            dry_run=True,
            now=NOW,
            tag_series={"Grief": "no-such-series"},
        )


def test_our_own_header_and_a_plain_list_are_not_taken_for_a_tool() -> None:
    assert import_sources.detect(["email", "name", "timezone", "series", "status"]) is None
    assert import_sources.detect(["Email Address", "First Name"]) is None
    assert import_sources.split_tags('"Anxiety","Grief"') == ("Anxiety", "Grief")
    assert import_sources.split_tags("['grief', 'anxiety']") == ("grief", "anxiety")


def test_blank_lines_in_a_tools_export_are_skipped_not_refused(live: Settings) -> None:
    text = (SOURCES / "kit.csv").read_text(encoding="utf-8").replace("\n", "\n\n", 2)
    path = live.var_dir / "kit-with-blank-lines.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    report = importing.import_csv(live, path, dry_run=True, now=NOW)
    assert (report.rows, report.new, report.invalid) == (5, 5, [])


def test_our_export_reports_each_column_as_itself(live: Settings) -> None:
    path = live.var_dir / "ours.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("email,Name,TZ,notes\nann@example.org,Ann,UTC,x\n", encoding="utf-8")
    report = importing.import_csv(live, path, dry_run=True, now=NOW)
    assert report.columns == [["email", "email"], ["Name", "name"], ["TZ", "timezone"],
                              ["notes", "ignored"]]  # fmt: skip
    assert report.ignored_columns == ["notes"] and report.tags == {}


def test_a_tools_header_without_an_email_column_refuses_the_file() -> None:
    with pytest.raises(RosterError, match="looks like a Kit export but has no email column"):
        import_sources.plan(["first_name", "state", "created_at"], None, set())


def test_a_long_tag_is_known_by_its_first_characters() -> None:
    tags = import_sources.split_tags("x" * 5000 + ", short")
    assert tags == ("x" * import_sources.TAG_CHARS, "short")
