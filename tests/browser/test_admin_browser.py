"""The therapist in Chromium: signs in, queues a series from its page, previews, looks at people;
then `tick --now` at the start date sends part 1 to exactly the right people."""

from __future__ import annotations

import datetime as dt
import email
from email import policy
from pathlib import Path
from typing import Any

import pytest
from browser_support import ADMIN_PASSWORD
from engine_support import cli_tick
from playwright.sync_api import expect
from sqlalchemy import select

from newsletter.core.config import Settings
from newsletter.services import roster
from newsletter.store.db import session_scope
from newsletter.store.models import SENT, Delivery, Enrollment, Part, Series, Subscriber

pytestmark = pytest.mark.browser

PASSWORD = ADMIN_PASSWORD  # what the admin_server fixture sets
CO = "co-created-process"


def people(settings: Settings) -> dict[str, int]:
    """Two readers who should get the series, and three who must not."""
    now = dt.datetime.now(dt.UTC)
    ids = {
        "ana": roster.add_subscriber(
            settings, email="ana@example.org", name="Ana", timezone="Europe/London", confirmed=True
        ),
        "bo": roster.add_subscriber(
            settings, email="bo@example.org", name="Bo", timezone="America/Chicago", confirmed=True
        ),
        "cy": roster.add_subscriber(settings, email="cy@example.org", name="Cy"),  # pending
        "di": roster.add_subscriber(settings, email="di@example.org", confirmed=True),
        "ed": roster.add_subscriber(settings, email="ed@example.org", confirmed=True),
    }
    with session_scope(settings.database_url) as session:
        di = session.get(Subscriber, ids["di"])
        assert di is not None
        di.takes_new_series = False  # chose "no new series"
        ed = session.get(Subscriber, ids["ed"])
        assert ed is not None
        roster.unsubscribe(settings, session, ed, now)
    return ids


def shot(page: Any, artifacts: Path, name: str) -> None:
    page.screenshot(path=str(artifacts / f"admin-{name}.png"), full_page=True)


def mails(settings: Settings) -> list[email.message.EmailMessage]:
    """Every mail in the outbox, oldest first."""
    return [
        email.message_from_bytes(path.read_bytes(), policy=policy.default)
        for path in sorted(settings.outbox_dir.glob("*.eml"))
    ]


def articles(settings: Settings, subject: str) -> list[email.message.EmailMessage]:
    """The outbox mails with this subject (the confirmation email has another)."""
    return [m for m in mails(settings) if str(m["Subject"]) == subject]


def test_queue_series_from_admin_then_tick_sends_part_one(
    admin_server: tuple[str, Settings], browser: Any, artifacts: Path
) -> None:
    base, settings = admin_server
    ids = people(settings)
    context = browser.new_context(
        timezone_id="Europe/London", locale="en-GB", viewport={"width": 1280, "height": 900}
    )
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)

    # Sign in.
    page.goto(f"{base}/admin")
    assert page.url.endswith("/admin/login")
    page.fill("#password", "wrong password")
    page.click("button[type=submit]")
    assert "isn't right" in page.text_content("main")
    shot(page, artifacts, "login")
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/admin")
    assert errors == [
        "Failed to load resource: the server responded with a status of 401 (Unauthorized)"
    ]
    errors.clear()  # that was the wrong password on purpose
    assert "No series is queued yet" in page.text_content("main")
    shot(page, artifacts, "dashboard-empty")

    # Import a small list: the dry-run report first, then the import (pending people).
    csv_path = artifacts.parent / "admin-import.csv"
    csv_path.write_bytes(
        "\ufeffemail;name;timezone\nfay@example.org;Fay;Europe/Paris\n"
        "FAY@example.org;Fay again;\nnot-an-address;X;\ngus@example.org;Gus;\n".encode()
    )
    page.click("text=Import")
    page.set_input_files("#file", str(csv_path))
    page.click("button:has-text('Check the file')")
    report = page.text_content("main") or ""
    assert "nothing has changed yet" in report and "Line" in report
    shot(page, artifacts, "import-check")
    page.click("button:has-text('Import 2 people')")
    assert "Import done" in (page.text_content("main") or "")
    csv_path.unlink()
    with session_scope(settings.database_url) as session:
        fay = roster.find(session, "fay@example.org")
        assert fay is not None and fay.status == "pending"

    # Queue the Co-Created series to start in about a month.
    start = dt.date.today() + dt.timedelta(days=30)
    page.click("text=Series")
    page.wait_for_url(f"{base}/admin/series")
    card = page.locator(f"#series-{CO}")
    assert "draft" in card.text_content()
    assert "will reach 2 active subscribers" in card.text_content()
    card.locator("input[name=start]").fill(start.isoformat())
    tuesday = start + dt.timedelta(days=(1 - start.weekday()) % 7)  # Co-Created goes on Tuesdays
    expected = f"{tuesday:%a} {tuesday.day} {tuesday:%b %Y}"  # web/dates.py: "Tue 5 Jan 2027"
    assert card.locator(f"#first-{CO}").text_content() == expected
    card.locator("button", has_text="Queue this series").click()
    page.wait_for_url(f"{base}/admin/series")
    flash = page.text_content("[role=status]")
    assert flash is not None and "for 2 subscribers" in flash
    assert "live" in page.locator(f"#series-{CO}").text_content()
    shot(page, artifacts, "series")

    with session_scope(settings.database_url) as session:
        series_id = session.scalar(select(Series.id).where(Series.slug == CO))
        rows = list(session.scalars(select(Enrollment).where(Enrollment.series_id == series_id)))
        assert {r.subscriber_id for r in rows} == {ids["ana"], ids["bo"]}
        dues = [r.next_due_at for r in rows]
        assert all(d is not None for d in dues)
    first = min(d for d in dues if d is not None)
    last = max(d for d in dues if d is not None)
    assert first.date() >= start - dt.timedelta(days=1)
    assert {d.date() for d in dues if d is not None} <= {tuesday, tuesday + dt.timedelta(days=1)}

    # Preview part 1 as Ana sees it, and the plain text.
    page.goto(f"{base}/admin/series/{CO}/1")
    page.select_option("#subscriber", str(ids["ana"]))
    page.click("button:has-text('Show')")
    page.wait_for_load_state("networkidle")
    frame = page.frame_locator("iframe.email-frame")
    expect(frame.locator("body")).to_contain_text("Hi Ana,")  # the frame loads after the page
    assert "Hi Ana," in frame.locator("body").text_content()
    assert "Hi Ana," in page.text_content("pre.plain")
    shot(page, artifacts, "preview")

    # "Send me a test": one [Test] email to the therapist through the configured backend.
    page.fill("#to", "therapist@example.org")
    page.click("button:has-text('Send me a test')")
    assert "therapist@example.org" not in page.url
    tests_sent = [
        m
        for m in mails(settings)
        if "therapist@example.org" in str(m["To"]) and str(m["Subject"]).startswith("[Test] ")
    ]
    assert len(tests_sent) == 1

    # A subscriber's page: their queue shows the series and its first date.
    page.goto(f"{base}/admin/subscribers")
    page.fill("#q", "ana@")
    page.click("button:has-text('Search')")
    assert "@" not in page.url  # the search went in a POST body, not the address bar
    page.click("text=ana@example.org")
    assert "Psychotherapy as a Co-Created Process" in page.text_content("main")
    shot(page, artifacts, "subscriber")
    page.goto(f"{base}/admin/subscribers")
    shot(page, artifacts, "subscribers")

    # The day before the start nothing goes; at the start date part 1 reaches Ana and Bo only.
    assert cli_tick(first - dt.timedelta(days=1))["sent"] == 0
    summary = cli_tick(last + dt.timedelta(minutes=1))
    assert summary["sent"] == 2, summary
    with session_scope(settings.database_url) as session:
        sent = list(session.scalars(select(Delivery).where(Delivery.series_id == series_id)))
        assert {(d.subscriber_id, d.part_number, d.status) for d in sent} == {
            (ids["ana"], 1, SENT),
            (ids["bo"], 1, SENT),
        }
    with session_scope(settings.database_url) as session:
        title = session.scalar(
            select(Part.title).where(Part.series_id == series_id, Part.number == 1)
        )
    assert title
    recipients = sorted(str(m["To"]) for m in articles(settings, title))
    assert len(recipients) == 2 and "ana@example.org" in recipients[0]
    assert "bo@example.org" in recipients[1]
    assert cli_tick(last + dt.timedelta(minutes=2))["sent"] == 0  # once only

    # The dashboard now says what went out.
    page.goto(f"{base}/admin")
    assert "No failures or bounces" in page.text_content("main")
    shot(page, artifacts, "dashboard")
    context.close()
    assert errors == []
