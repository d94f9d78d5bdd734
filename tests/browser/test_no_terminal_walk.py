"""The therapist never opens a terminal: one walk in Chromium from a fresh `newsletter init` —
the printed setup link → the owner → two-factor on (codes from pyotp) → sign out → sign in with
password and code → SendGrid connected (against the stand-in) → a test send → a multi-paragraph
broadcast sent after its confirmation → a reader edited and sent part 2 again → a sent article
corrected. At 1280 and 390 px (the settings fixture runs it on both databases)."""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path
from typing import Any

import pyotp
import pytest
from browser_support import MYTHS, reader_with_two_parts
from engine_support import cli_tick
from playwright.sync_api import expect
from sendgrid_fake import API_KEY, FakeSendGrid

from newsletter.core.config import load_settings
from newsletter.store import practice
from newsletter.store.practice import effective_settings

pytestmark = pytest.mark.browser

EMAIL, PASSWORD = "maya@harbour.example", "maya's own long password"
TITLE = "The office is closed next week"
PARAGRAPHS = ["We are **closed** next week.", "Your series carries on as usual.", "See you soon."]
ADDED = "One sentence the correction adds."


def _bodies(sg: FakeSendGrid, start: int) -> list[tuple[list[str], str]]:
    """(recipients, the request body as text) of each mail SendGrid accepted from `start` on."""
    return [(r.emails, json.dumps(r.body)) for r in sg.accepted[start:]]


@pytest.mark.parametrize("width", [1280, 390])
def test_no_terminal_after_init(
    own_schedules: Path,
    stand_in: FakeSendGrid,
    fresh_server: tuple[str, str],
    browser: Any,
    artifacts: Path,
    width: int,
) -> None:
    sg = stand_in
    base, setup_link = fresh_server
    settings = load_settings()
    assert Path(settings.schedules_dir) == own_schedules
    sub = reader_with_two_parts(settings)  # parts 1 and 2 went out in test mode, before SendGrid
    context = browser.new_context(locale="en-GB", viewport={"width": width, "height": 900})
    page = context.new_page()
    steps = iter(range(1, 100))

    def shot(step: str) -> None:
        name = f"no-terminal-{width}-{next(steps):02d}-{step}.png"
        page.screenshot(path=str(artifacts / name), full_page=True)

    page.goto(base + "/admin")  # before the owner exists: only the way to the setup link
    expect(page.locator("main")).to_contain_text("open the setup link printed by the server")
    assert page.locator("input[name=password]").count() == 0
    shot("before-setup")

    page.goto(setup_link)
    page.fill("#name", "Maya Ellis")
    page.fill("#email", EMAIL)
    page.fill("#password", PASSWORD)
    shot("setup")
    page.click("button[type=submit]")
    page.wait_for_url(base + "/admin/settings")

    page.click("nav >> text=Your account")
    page.wait_for_url(base + "/admin/account")
    expect(page.locator("[data-totp-qr] svg")).to_have_count(1)
    secret = page.inner_text("[data-totp-secret]").strip()
    page.fill("#code", pyotp.TOTP(secret).now())
    shot("enrol")
    page.click("text=Turn on two-factor sign-in")
    expect(page.locator("[data-recovery-codes] code")).to_have_count(10)
    shot("recovery-codes")
    page.click("text=Done")
    expect(page.locator("main")).to_contain_text("Recovery codes left: 10")

    page.click("nav >> text=Sign out")
    page.wait_for_url(base + "/admin/login")
    page.fill("#email", EMAIL)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.fill("#code", pyotp.TOTP(secret).at(time.time() + 30))  # the next step: not a reuse
    shot("code")
    page.click("button[type=submit]")
    page.wait_for_url(base + "/admin")
    expect(page.locator("nav >> text=Accounts")).to_have_count(1)

    page.goto(f"{base}/admin/settings")
    page.click("text=Mail: how email is sent")
    expect(page.locator(".provider-status")).to_contain_text("Not sent yet — test mode")
    page.fill("#api_key", API_KEY)
    page.click("button:has-text('Connect SendGrid')")
    expect(page.locator("body")).to_contain_text("SendGrid is connected")
    shot("sendgrid-connected")
    practice.forget()  # this process ticked before: a worker rereads within CACHE_SECONDS
    assert not [p for c in sg.api_calls for p in c.problems]
    assert sg.webhook_url == f"{base}/webhooks/sendgrid"
    assert effective_settings(settings).sendgrid_webhook_public_key == sg.public_key
    event = {"email": "nobody@example.net", "timestamp": 1, "event": "processed",
             "sg_event_id": f"walk-{width}", "sg_message_id": "m.filter"}  # fmt: skip
    assert sg.post_events([event]).status == 200
    assert sg.post_events([event], signed=False).status == 401

    page.fill("#to", EMAIL)
    page.click("button:has-text('Send a test to me')")
    expect(page.locator("body")).to_contain_text("Test sent")
    assert [to for to, _ in _bodies(sg, 0)] == [[EMAIL]] and not sg.problems
    shot("test-sent")

    page.click("nav >> text=Broadcasts")
    page.wait_for_url(f"{base}/admin/broadcasts")
    page.fill("#title", TITLE)
    page.fill("#summary", "We are back on Monday.")
    page.fill("#body_md", "\n\n".join(PARAGRAPHS))
    page.check("input[name=when][value=now]")
    page.click("button:has-text('Schedule it')")
    expect(page.locator("h1")).to_contain_text("to 1 reader")  # asked first
    shot("broadcast-confirm")
    page.click("button:has-text('Yes, schedule it')")
    expect(page.locator("[role=status]")).to_contain_text("is scheduled for 1 reader")
    shot("broadcast-scheduled")
    sent = len(sg.accepted)
    assert cli_tick(dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5))["sent"] >= 1
    [(to, body)] = [b for b in _bodies(sg, sent) if TITLE in b[1]]
    assert len(to) == 1 and all(p.replace("**", "") in body for p in PARAGRAPHS[1:])
    assert body.count("<p") >= len(PARAGRAPHS)  # each paragraph its own

    page.goto(f"{base}/admin/subscribers/{sub}")
    page.fill("#edit-name", "Maya R. Reader")
    page.select_option("#edit-timezone", "Asia/Tokyo")
    page.click("button:has-text('Save their details')")
    expect(page.locator("#activity")).to_contain_text("time zone Europe/London → Asia/Tokyo")
    sent = len(sg.accepted)
    page.select_option("#again-part", f"{MYTHS}/2")
    page.click("button:has-text('Send it now')")
    expect(page.locator("#activity")).to_contain_text("Part sent again")
    shot("reader-part-2-again")
    [(again_to, again)] = _bodies(sg, sent)
    assert again_to == to and "Maya R. Reader" in again

    page.goto(f"{base}/admin/series")
    page.click(f"a[href='/admin/series/{MYTHS}/1/correct']")
    page.wait_for_url(f"{base}/admin/series/{MYTHS}/1/correct")
    page.fill("#c-body", f"{page.input_value('#c-body')}\n\n{ADDED}")
    page.check("#c-send")
    shot("correction")
    sent = len(sg.accepted)
    page.click("button:has-text('Save the correction')")
    expect(page.locator("body")).to_contain_text("Sent to 1 reader who had it")
    [(fixed_to, fixed)] = _bodies(sg, sent)
    assert fixed_to == to and ADDED in fixed
    [part_1] = sorted((own_schedules / MYTHS).glob("01-*.md"))
    assert ADDED in part_1.read_text()  # the server's files hold the corrected text

    page.goto(f"{base}/archive/{MYTHS}/1")
    expect(page.locator("article")).to_contain_text(ADDED)
    expect(page.locator("p.corrected")).to_contain_text("Corrected on ")
    shot("archive-corrected")
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"{overflow} px of sideways scrolling at {width} px"
    context.close()
