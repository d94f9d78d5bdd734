"""The therapist's workspace, walked in Chromium at 1280 px and at 390 px (issue 14, "Done when").

First sign-in -> practice settings -> write a new 3-part series in the browser with a deliberate
mistake (the inline problem, then the fix) -> a draft kept across a reload -> preview part 2 at
phone width in dark mode -> queue it for a date next month -> the calendar shows part 1 on the
right days with the right counts, and who -> `tick --now` on that day sends part 1 to exactly
the readers the calendar listed, with the practice's own name and postal address -> the outbox
viewer finds it by address -> the series is on disk as plain files in the documented format
(`git status` and `git diff` of schedules/ show exactly the new folder). Screenshots of each step go to
tests/artifacts/workspace-<width>-<step>.png.
"""

from __future__ import annotations

import datetime as dt
import email
import shutil
import subprocess
from collections.abc import Iterator
from email import policy
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse
from zoneinfo import ZoneInfo

import pytest
from engine_support import cli_tick
from paths import free_port
from playwright.sync_api import expect
from servers import uvicorn_app
from sqlalchemy import select

from newsletter.content import series as content
from newsletter.core.config import Settings, load_settings
from newsletter.services import roster
from newsletter.store import series as series_store
from newsletter.store.db import session_scope
from newsletter.store.models import SENT, Delivery, Enrollment, Series
from newsletter.web.dates import format_day

pytestmark = pytest.mark.browser

PASSWORD = "the therapist's own long password"
SLUG = "anxiety-at-work"
PRACTICE = "Harbour Street Counselling"
ADDRESS = "12 Harbour Street, Falmouth TR11 2AB, United Kingdom"
PARTS = [
    (
        "When work keeps you up at night",
        "Lying awake over work is common; here is what is going on.",
        "Many people lie awake going over the day.\n\n## What is going on\n\n"
        "Your body is still **on alert** after the day is done.",
    ),
    (
        "Myth: you should just relax",
        "Why telling yourself to relax rarely works, and what does.",
        "Telling yourself to relax is a bit like telling yourself to fall asleep.\n\n"
        "## Try this instead\n\n- Notice the worry\n- Name it\n- Come back to the room",
    ),
    (
        "Talking to your manager",
        "A few sentences that make the conversation easier.",
        "It can help to plan the first sentence.",
    ),
]

SERIES_YAML = """\
slug: anxiety-at-work
title: Anxiety at Work
description: Three short pieces on worry at work, and what helps.
send_day: wednesday
send_time: "08:30"
cadence: weekly
parts:
  - 01-when-work-keeps-you-up-at-night.md
  - 02-myth-you-should-just-relax.md
  - 03-talking-to-your-manager.md
"""

PART_2 = """\
---
title: 'Myth: you should just relax'
summary: Why telling yourself to relax rarely works, and what does.
---
Telling yourself to relax is a bit like telling yourself to fall asleep.

## Try this instead

- Notice the worry
- Name it
- Come back to the room
"""


def _git(folder: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(folder), *args], check=True, capture_output=True, text=True
    ).stdout


@pytest.fixture
def workspace(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[str, Settings]]:
    """A real uvicorn process over a schedules/ of its own, a git repository of the shipped
    series, so the test can read `git diff` after the walk."""
    schedules = tmp_path / "schedules"
    shutil.copytree(settings.schedules_dir, schedules)
    _git(schedules, "init", "-q")
    _git(schedules, "add", ".")
    _git(schedules, "-c", "user.name=t", "-c", "user.email=t@localhost", "commit", "-qm", "ship")
    port = free_port()
    monkeypatch.setenv("NEWSLETTER_PUBLIC_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("NEWSLETTER_ADMIN_PASSWORD", PASSWORD)
    monkeypatch.setenv("NEWSLETTER_SCHEDULES_DIR", str(schedules))
    served = load_settings()
    with session_scope(served.database_url) as session:
        series_store.sync(session, content.load_all(schedules))
    with uvicorn_app(port, tmp_path / "uvicorn.log", ready_path="/admin/login") as base:
        yield base, served


def readers(settings: Settings) -> dict[str, int]:
    """Three readers who take new series, one still pending, one who chose no new series."""
    ids = {
        name: roster.add_subscriber(
            settings, email=f"{name}@example.org", name=name.title(), timezone=zone, confirmed=True
        )
        for name, zone in (
            ("ana", "Europe/London"),
            ("bo", "America/Chicago"),
            ("cai", "Australia/Sydney"),
        )
    }
    ids["dee"] = roster.add_subscriber(settings, email="dee@example.org", name="Dee")
    ids["eli"] = roster.add_subscriber(settings, email="eli@example.org", confirmed=True)
    with session_scope(settings.database_url) as session:
        roster.find(session, "eli@example.org").takes_new_series = False  # type: ignore[union-attr]
    return ids


def no_sideways_scroll(page: Any) -> None:
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1"), (
        f"{page.url} scrolls sideways at {page.viewport_size['width']} px"
    )


@pytest.mark.parametrize("width", [1280, 390])
def test_the_therapists_workspace_walk(
    workspace: tuple[str, Settings], browser: Any, artifacts: Path, width: int
) -> None:
    base, settings = workspace
    ids = readers(settings)
    context = browser.new_context(
        timezone_id="Europe/London",
        locale="en-GB",
        viewport={"width": width, "height": 900},
        is_mobile=width < 500,
        has_touch=width < 500,
    )
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("dialog", lambda d: d.accept())

    def shot(step: str) -> None:
        page.screenshot(path=str(artifacts / f"workspace-{width}-{step}.png"), full_page=True)

    # First sign-in.
    page.goto(f"{base}/admin")
    page.wait_for_url(f"{base}/admin/login")
    shot("01-login")
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/admin")
    assert "Set your practice details" in (page.text_content("main") or "")
    shot("02-dashboard")

    # Practice settings: the practice's own name and postal address, not the examples.
    page.click("a[href='/admin/settings']")
    page.wait_for_url(f"{base}/admin/settings")
    page.fill("#practice_name", PRACTICE)
    page.fill("#from_name", PRACTICE)
    page.fill("#postal_address", ADDRESS)
    page.click("button:has-text('Save settings')")
    page.wait_for_url(f"{base}/admin/settings")
    assert page.input_value("#postal_address") == ADDRESS
    no_sideways_scroll(page)
    shot("02b-practice-settings")

    # Write a new series: three parts, the second without its inbox preview line.
    page.goto(f"{base}/admin/series")
    page.click("text=Write a new series")
    page.wait_for_url(f"{base}/admin/series/new")
    page.fill("#title", "Anxiety at Work")
    page.fill("#description", "Three short pieces on worry at work, and what helps.")
    page.select_option("#send_day", "2")
    page.fill("#send_time", "08:30")
    for number, (title, summary, body) in enumerate(PARTS, start=1):
        if number > 1:
            page.click("#add-part")
        page.fill(f"#part-{number}-title", title)
        if number != 2:  # the deliberate mistake
            page.fill(f"#part-{number}-summary", summary)
        page.fill(f"#part-{number}-body", body)
    # Parts move with their text, and are numbered again.
    page.locator("fieldset[data-part]").nth(1).locator("button[data-action=down]").click()
    assert page.input_value("#part-2-title") == PARTS[2][0]
    assert page.input_value("#part-3-title") == PARTS[1][0]
    page.locator("fieldset[data-part]").nth(2).locator("button[data-action=up]").click()
    assert [page.input_value(f"#part-{n}-title") for n in (1, 2, 3)] == [p[0] for p in PARTS]
    counter = page.locator("#part-1-title ~ .counter").first
    assert counter.text_content() == "31 characters: shown in full."
    no_sideways_scroll(page)
    shot("03-writing")
    page.click("#save")
    page.wait_for_load_state("load")
    problem = page.locator("#err-part-2-summary")
    assert problem.text_content() == (
        "Write an inbox preview line: the sentence most inboxes show after the subject."
    )
    assert page.get_attribute("#part-2-summary", "aria-invalid") == "true"
    assert page.evaluate("document.activeElement.id") == "part-2-summary"  # focus is there
    assert page.input_value("#part-3-body") == PARTS[2][2]  # nothing typed was lost
    assert not (settings.schedules_dir / SLUG).exists()
    assert errors == [
        "Failed to load resource: the server responded with a status of 422 (Unprocessable Entity)"
    ]
    errors.clear()  # that was the page saying what to fix
    shot("04-inline-problem")

    page.fill("#part-2-summary", PARTS[1][1])
    page.click("#save")
    page.wait_for_url(f"{base}/admin/series/{SLUG}/edit")
    notice = page.text_content("[role=status]") or ""
    assert "Saved “Anxiety at Work”: " in notice and "1 new series" in notice
    assert (settings.schedules_dir / SLUG / "series.yaml").read_text() == SERIES_YAML
    assert (settings.schedules_dir / SLUG / "02-myth-you-should-just-relax.md").read_text() == (
        PART_2
    )
    shot("05-saved")

    # A draft survives a reload, and can be discarded.
    page.fill("#part-3-body", PARTS[2][2] + "\n\nA sentence not saved yet.")
    page.wait_for_timeout(800)  # the draft is kept 300 ms after the last keystroke
    page.reload()
    assert page.is_visible("#draft-notice")
    assert page.input_value("#part-3-body").endswith("A sentence not saved yet.")
    shot("06-draft-restored")
    page.click("#discard-draft")
    page.wait_for_load_state("load")
    assert not page.is_visible("#draft-notice")
    assert page.input_value("#part-3-body") == PARTS[2][2]

    # Preview part 2 at phone width in dark mode.
    page.locator("fieldset[data-part]").nth(1).locator("button[data-action=preview]").click()
    page.click("button[data-value=phone]")
    with page.expect_response(lambda r: r.url.endswith("/series-editor/email.html")):
        page.click("button[data-mode=dark]")
    frame = page.frame_locator("#email-frame")
    expect(frame.locator("body")).to_contain_text("Telling yourself to relax")
    assert "Telling yourself to relax" in (frame.locator("body").text_content() or "")
    assert page.locator("#email-frame").bounding_box()["width"] <= 390  # type: ignore[index]
    # the email's own dark-mode colours; retried, as the frame may still be loading the new page
    expect(frame.locator("body")).to_have_css("background-color", "rgb(22, 24, 25)")
    assert page.text_content("#preview-number") == "2"
    assert page.text_content("#inbox-subject") == "Myth: you should just relax"
    page.locator("#preview").scroll_into_view_if_needed()
    shot("07-preview-phone-dark")

    # Queue it for a date next month.
    today = dt.date.today()
    start = (today.replace(day=1) + dt.timedelta(days=32)).replace(day=1)
    page.goto(f"{base}/admin/series")
    card = page.locator(f"#series-{SLUG}")
    assert "will reach 3 active subscribers" in (card.text_content() or "")
    card.locator("input[name=start]").fill(start.isoformat())
    card.locator("button", has_text="Queue this series").click()
    page.wait_for_url(f"{base}/admin/series")
    assert "for 3 subscribers" in (page.text_content("[role=status]") or "")
    no_sideways_scroll(page)
    shot("08-queued")

    with session_scope(settings.database_url) as session:
        series_id = session.scalar(select(Series.id).where(Series.slug == SLUG))
        rows = list(session.scalars(select(Enrollment).where(Enrollment.series_id == series_id)))
        assert {r.subscriber_id for r in rows} == {ids["ana"], ids["bo"], ids["cai"]}
        dues = sorted(r.next_due_at for r in rows if r.next_due_at is not None)
    assert len(dues) == 3 and min(dues).date() >= start - dt.timedelta(days=1)

    # The calendar: part 1 on the right days, one count per slot, and who is in each.
    zone = ZoneInfo(settings.default_timezone)
    page.goto(f"{base}/admin/calendar")
    page.click("text=12 weeks")
    page.wait_for_url(f"{base}/admin/calendar?weeks=12")
    sends = page.locator("a.send", has_text="Anxiety at Work · part 1")
    listed: dict[dt.datetime, int] = {}
    links = []
    for i in range(sends.count()):
        link = sends.nth(i)
        href = link.get_attribute("href") or ""
        at = dt.datetime.fromisoformat(parse_qs(urlparse(href).query)["at"][0])
        count = int((link.locator(".send-count").text_content() or "").split()[0])
        listed[at] = listed.get(at, 0) + count
        day = link.locator("xpath=ancestor::li[contains(@class, 'calendar-day')]/h3")
        assert (day.text_content() or "").startswith(format_day(at.astimezone(zone).date()))
        links.append(href)
    expected: dict[dt.datetime, int] = {}
    for due in dues:
        expected[due] = expected.get(due, 0) + 1
    assert listed == expected
    no_sideways_scroll(page)
    shot("09-calendar")
    calendar_people: set[str] = set()
    for href in links:
        page.goto(base + href)
        calendar_people |= {(a.text_content() or "").strip() for a in page.locator("td a").all()}
    assert calendar_people == {"ana@example.org", "bo@example.org", "cai@example.org"}
    shot("10-calendar-people")

    # `tick --now` on that day: part 1 to exactly those three, once.
    assert cli_tick(dues[0] - dt.timedelta(minutes=1))["sent"] == 0
    assert cli_tick(dues[-1] + dt.timedelta(minutes=1))["sent"] == 3
    assert cli_tick(dues[-1] + dt.timedelta(minutes=2))["sent"] == 0
    with session_scope(settings.database_url) as session:
        sent = {
            (d.subscriber_id, d.part_number, d.status)
            for d in session.scalars(select(Delivery).where(Delivery.series_id == series_id))
        }
    assert sent == {(ids[n], 1, SENT) for n in ("ana", "bo", "cai")}
    outbox = [
        email.message_from_bytes(p.read_bytes(), policy=policy.default)
        for p in sorted(settings.outbox_dir.glob("*.eml"))
    ]
    part_one = [m for m in outbox if str(m["Subject"]) == PARTS[0][0]]
    recipients = {str(m["To"]).split("<")[-1].rstrip(">") for m in part_one}
    assert len(part_one) == 3 and recipients == calendar_people
    for message in part_one:
        assert PRACTICE in str(message["From"])
        for kind in ("plain", "html"):
            body = message.get_body(preferencelist=(kind,)).get_content()  # type: ignore[union-attr]
            assert PRACTICE in body and ADDRESS in body
            assert "Example Therapy Practice" not in body and "Sample Street" not in body

    # The outbox viewer shows it, found by address.
    page.goto(f"{base}/admin/outbox")
    page.fill("#q", "cai@example.org")
    page.click("form[role=search] button[type=submit]")
    entries = page.locator(".outbox-list a")
    assert entries.count() == 1 and PARTS[0][0] in (entries.first.text_content() or "")
    no_sideways_scroll(page)
    shot("11-outbox")
    entries.first.click()
    assert page.text_content("h1") == PARTS[0][0]
    assert "cai@example.org" in (page.text_content("pre.headers") or "")
    sent_frame = page.frame_locator("iframe.email-frame")
    expect(sent_frame.locator("body")).to_contain_text(ADDRESS)
    assert ADDRESS in (sent_frame.locator("body").text_content() or "")
    shot("12-outbox-email")

    # The files: exactly one new folder in schedules/, in the documented format.
    status = _git(settings.schedules_dir, "status", "--porcelain", "--untracked-files=all")
    assert sorted(status.splitlines()) == [
        f"?? {SLUG}/01-when-work-keeps-you-up-at-night.md",
        f"?? {SLUG}/02-myth-you-should-just-relax.md",
        f"?? {SLUG}/03-talking-to-your-manager.md",
        f"?? {SLUG}/series.yaml",
    ]
    _git(settings.schedules_dir, "add", "-N", ".")
    diff = _git(settings.schedules_dir, "diff")
    (artifacts / f"workspace-{width}-schedules.diff").write_text(diff)
    assert "+slug: anxiety-at-work\n" in diff and '+send_time: "08:30"\n' in diff
    assert content.validate(settings.schedules_dir) == []

    context.close()
    assert errors == []
