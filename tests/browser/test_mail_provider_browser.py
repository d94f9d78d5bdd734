"""The therapist connects SendGrid in Chromium (against the stand-in), at 1280 and 390 px: key
verified, Event Webhook set up and signed, public key kept; a signed event from the stand-in is
accepted and an unsigned one refused; then "send a test to me" goes out through SendGrid."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from browser_support import ADMIN_PASSWORD
from playwright.sync_api import expect
from sendgrid_fake import API_KEY, FakeSendGrid

from newsletter.core.config import Settings
from newsletter.store.practice import effective_settings

pytestmark = pytest.mark.browser


@pytest.mark.parametrize("width", [1280, 390])
def test_connect_sendgrid_then_events_and_a_test_send(
    stand_in: FakeSendGrid,
    admin_server: tuple[str, Settings],
    browser: Any,
    artifacts: Path,
    width: int,
) -> None:
    sg = stand_in
    base, served = admin_server
    context = browser.new_context(viewport={"width": width, "height": 900})
    page = context.new_page()
    page.goto(f"{base}/admin/login")
    page.fill("#password", ADMIN_PASSWORD)
    page.click("button[type=submit]")
    page.goto(f"{base}/admin/settings")
    page.click("text=Mail: how email is sent")
    expect(page.locator(".provider-status")).to_contain_text("Not sent yet — test mode")
    page.fill("#api_key", API_KEY)
    page.click("button:has-text('Connect SendGrid')")
    expect(page.locator("body")).to_contain_text("SendGrid is connected")
    expect(page.locator(".provider-status")).to_contain_text("SendGrid")
    page.screenshot(path=str(artifacts / f"admin-mail-connected-{width}.png"), full_page=True)

    # what SendGrid was told, by documented requests only
    assert not [p for c in sg.api_calls for p in c.problems]
    assert sg.webhook_url == f"{base}/webhooks/sendgrid"
    assert effective_settings(served).sendgrid_webhook_public_key == sg.public_key
    event = {"email": "nobody@example.net", "timestamp": 1, "event": "processed",
             "sg_event_id": f"browser-{width}", "sg_message_id": "m.filter"}  # fmt: skip
    signed = sg.post_events([event])
    assert signed.status == 200, signed.body
    unsigned = sg.post_events([event], signed=False)
    assert unsigned.status == 401, unsigned.body

    page.fill("#to", "maya@riverside.example.net")
    page.click("button:has-text('Send a test to me')")
    expect(page.locator("body")).to_contain_text("Test sent")
    [sent] = sg.accepted
    assert sent.emails == ["maya@riverside.example.net"] and not sg.problems
    page.screenshot(path=str(artifacts / f"admin-mail-test-sent-{width}.png"), full_page=True)
    context.close()
