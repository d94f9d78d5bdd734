"""The therapist in Chromium writes a broadcast, previews it, schedules it for next Tuesday at
each reader's usual time; `tick --now` then sends it once to each reader."""

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

from newsletter.core.config import Settings
from newsletter.services import broadcasts, roster

pytestmark = pytest.mark.browser

PASSWORD = ADMIN_PASSWORD  # what the admin_server fixture sets


def test_write_preview_and_schedule_a_broadcast(
    admin_server: tuple[str, Settings], browser: Any, artifacts: Path
) -> None:
    base, settings = admin_server
    for address, zone in (("ana@example.org", "Europe/London"), ("bo@example.org", "Asia/Tokyo")):
        roster.add_subscriber(settings, email=address, timezone=zone, confirmed=True)
    today = dt.datetime.now(dt.UTC).date()
    tuesday = today + dt.timedelta(days=(1 - today.weekday()) % 7 or 7)
    context = browser.new_context(locale="en-GB", viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.goto(f"{base}/admin/login")
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/admin")

    page.click("nav >> text=Broadcasts")
    page.wait_for_url(f"{base}/admin/broadcasts")
    page.fill("#title", "The office is closed next week")
    page.fill("#summary", "We are back on Monday.")
    page.fill("#body_md", "We are **closed** next week. Your series carries on as usual.")
    page.click("button:has-text('Preview')")
    frame = page.frame_locator("iframe.email-frame")
    expect(frame.locator("body")).to_contain_text("closed next week")  # the frame loads later
    assert "closed next week" in (frame.locator("body").text_content() or "")
    assert "call or text 988" in (frame.locator("body").text_content() or "")
    assert "Hello," in (page.text_content(".preview-grid pre.plain") or "") or "Hi " in (
        page.text_content(".preview-grid pre.plain") or ""
    )
    page.screenshot(path=str(artifacts / "admin-broadcast-preview.png"), full_page=True)

    page.check("input[name=when][value=date]")
    page.fill("#on_date", tuesday.isoformat())
    page.check("input[name=archive]")
    page.click("button:has-text('Schedule it')")
    expect(page.locator("h1")).to_contain_text("to 2 readers on")  # asked first, nothing stored
    assert broadcasts.list_all(settings) == []
    page.screenshot(path=str(artifacts / "admin-broadcast-confirm.png"), full_page=True)
    page.click("button:has-text('Yes, schedule it')")
    expect(page.locator("[role=status]")).to_contain_text("is scheduled for 2 readers")
    assert "scheduled" in (page.text_content("table.broadcasts") or "")
    page.screenshot(path=str(artifacts / "admin-broadcast-scheduled.png"), full_page=True)
    context.close()

    [info] = broadcasts.list_all(settings)
    assert (info.recipients, info.in_archive) == (2, True)
    after = dt.datetime.combine(tuesday, dt.time(23, 59), tzinfo=dt.UTC)
    assert cli_tick(after)["sent"] >= 2
    sent = [
        email.message_from_bytes(p.read_bytes(), policy=policy.default)
        for p in sorted(settings.outbox_dir.glob("*.eml"))
    ]
    subjects = [str(m["Subject"]) for m in sent]
    assert subjects.count("The office is closed next week") == 2


def test_a_letter_previews_on_a_phone_in_dark_mode(
    admin_server: tuple[str, Settings], browser: Any, artifacts: Path
) -> None:
    base, _settings = admin_server
    context = browser.new_context(locale="en-GB", viewport={"width": 390, "height": 844})
    page = context.new_page()
    page.goto(f"{base}/admin/login")
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/admin")
    page.goto(f"{base}/admin/broadcasts")
    page.fill("#title", "The office is closed next week")
    expect(page.locator("[data-counter-for=title]")).to_contain_text("30 characters")
    page.fill("#summary", "We are back on Monday.")
    page.fill("#body_md", "We are closed next week.\n\nYour series carries on as usual.")
    page.click("#preview button[data-value=phone]")
    page.click("#preview button[data-mode=dark]")
    expect(page.locator("#frame-box")).to_have_class("frame-box phone dark")
    frame = page.frame_locator("#email-frame")
    body = frame.locator("body")
    expect(body).to_contain_text("Your series carries on as usual.")
    expect(body).to_contain_text("A letter from")
    assert "We are closed next week." in (body.text_content() or "")
    expect(page.locator("#inbox-subject")).to_have_text("The office is closed next week")
    page.screenshot(path=str(artifacts / "admin-broadcast-phone-dark.png"), full_page=True)
    page.click("#preview button[data-mode=plain]")
    expect(page.locator("#plain-text")).to_contain_text("Your series carries on as usual.")
    context.close()
