"""Line breaks typed in Chromium's textareas (sent as CRLF, as every browser does) are saved as LF
and render as separate paragraphs: a broadcast, the signup intro in Settings, a series part."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from browser_support import ADMIN_PASSWORD
from playwright.sync_api import expect
from sqlalchemy import select

from newsletter.core.config import Settings
from newsletter.services import roster
from newsletter.store.db import session_scope
from newsletter.store.models import Broadcast, Part, PracticeSetting

pytestmark = pytest.mark.browser

LETTER = "Dear reader,\n\nWe are closed next week.\nBack on Monday."
INTRO = "Short pieces about therapy.\n\nOne a week, at a calm hour."
PART = "Worry at night is common.\n\nIt often eases once it has a name."


@pytest.fixture(autouse=True)
def own_schedules(settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The editor writes into a copy of schedules/ (autouse: set before admin_server starts)."""
    folder = tmp_path / "schedules"
    shutil.copytree(settings.schedules_dir, folder)
    monkeypatch.setenv("NEWSLETTER_SCHEDULES_DIR", str(folder))
    return folder


def paragraphs(locator: Any) -> list[str]:
    """The text of each <p> under `locator`, whitespace folded."""
    return [" ".join(t.split()) for t in locator.locator("p").all_text_contents()]


def test_line_breaks_typed_in_textareas_are_saved_and_render_as_paragraphs(
    admin_server: tuple[str, Settings], browser: Any, own_schedules: Path, artifacts: Path
) -> None:
    base, settings = admin_server
    assert settings.schedules_dir == own_schedules
    roster.add_subscriber(
        settings, email="ana@example.org", timezone="Europe/London", confirmed=True
    )
    context = browser.new_context(locale="en-GB", viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.goto(f"{base}/admin/login")
    page.fill("#password", ADMIN_PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/admin")

    # A broadcast of three lines in two paragraphs: previewed, then scheduled.
    page.goto(f"{base}/admin/broadcasts")
    page.fill("#title", "Closed next week")
    page.locator("#body_md").press_sequentially(LETTER)
    assert page.input_value("#body_md") == LETTER
    with page.expect_navigation():  # the preview is a form post answered by a new page
        page.click("button:has-text('Preview')")
    email_body = page.frame_locator("iframe.email-frame").locator("body")
    email_body.locator("p", has_text="Dear reader,").wait_for()  # the frame loads after the page
    shown = paragraphs(email_body)
    assert "Dear reader," in shown and "We are closed next week. Back on Monday." in shown
    assert "U+000D" not in (page.text_content("main") or "")
    page.screenshot(path=str(artifacts / "line-breaks-broadcast-preview.png"), full_page=True)
    page.click("button:has-text('Schedule it')")
    page.click("button:has-text('Yes, schedule it')")  # the confirmation names the audience
    expect(page.locator("[role=status]")).to_contain_text("is scheduled for 1 reader")
    with session_scope(settings.database_url) as db:
        saved = db.scalars(
            select(Part.body_md).join(Broadcast, Broadcast.series_id == Part.series_id)
        ).all()
    assert saved == [LETTER + "\n"]

    # The signup page's introduction, two paragraphs.
    page.goto(f"{base}/admin/settings")
    page.locator("#signup_intro").press_sequentially(INTRO)
    with page.expect_navigation():  # the URL is already /admin/settings: wait for the answer
        page.click("button:has-text('Save settings')")
    page.wait_for_url(f"{base}/admin/settings")
    with session_scope(settings.database_url) as db:
        row = db.get(PracticeSetting, "signup_intro")
        assert row is not None and row.value == INTRO
    page.goto(f"{base}/")
    shown = paragraphs(page.locator("main"))
    assert shown[shown.index("Short pieces about therapy.") + 1] == "One a week, at a calm hour."

    # A series part written in the editor: saved to its file with LF, previewed as paragraphs.
    page.goto(f"{base}/admin/series/new")
    page.fill("#title", "Sleep and Worry")
    page.fill("#send_time", "08:30")
    page.fill("#part-1-title", "When worry keeps you up")
    page.fill("#part-1-summary", "Worry at night is common, and it eases.")
    page.locator("#part-1-body").press_sequentially(PART)
    with page.expect_response(lambda r: r.url.endswith("/series-editor/email.html")):
        page.locator("fieldset[data-part]").first.locator("button[data-action=preview]").click()
    part_body = page.frame_locator("#email-frame").locator("body")
    # two paragraphs, in order; retried, as the editor may load the frame again meanwhile (a
    # read of every <p> once met a frame being replaced)
    expect(part_body.locator("p")).to_contain_text(
        ["Worry at night is common.", "It often eases once it has a name."]
    )
    page.click("#save")
    page.wait_for_url(f"{base}/admin/series/sleep-and-worry/edit*")
    [written] = (own_schedules / "sleep-and-worry").glob("01-*.md")
    text = written.read_bytes().decode()
    assert "\r" not in text and text.endswith(PART + "\n")
    context.close()
