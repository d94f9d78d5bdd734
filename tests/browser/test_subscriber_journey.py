"""A person in Chromium: signs up, confirms from the email, changes preferences, unsubscribes."""

from __future__ import annotations

import re
import time
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import expect
from sqlalchemy import select
from web_helpers import outbox

from newsletter.store.db import session_scope
from newsletter.store.models import ACTIVE, ENROLLED_ACTIVE, Enrollment, Subscriber
from newsletter.web import zones

pytestmark = pytest.mark.browser

ZONE = "Europe/Berlin"


def shot(page, artifacts: Path, name: str) -> None:
    page.screenshot(path=str(artifacts / f"browser-{name}.png"), full_page=True)


def subscriber_row(settings, email: str) -> Subscriber:
    with session_scope(settings.database_url) as s:
        row = s.scalar(select(Subscriber).where(Subscriber.email_key == email))
        assert row is not None
        return row


def mails(settings, count: int) -> list:
    """The outbox once it holds `count` mails (the confirmation goes out just after the page)."""
    deadline = time.monotonic() + 30
    while len(found := outbox(settings)) < count and time.monotonic() < deadline:
        time.sleep(0.1)
    return found


def link_in(mail_text: str, purpose: str) -> str:
    match = re.search(rf"(http://127\.0\.0\.1:\d+/{purpose}/[A-Za-z0-9._-]+)", mail_text)
    assert match, f"no {purpose} link in the email"
    return match.group(1)


def test_signup_confirm_preferences_unsubscribe(server, browser, artifacts):
    base, settings = server
    context = browser.new_context(
        timezone_id=ZONE, locale="en-GB", viewport={"width": 1100, "height": 900}
    )
    page = context.new_page()
    errors: list[str] = []
    expected = "status of 400"  # the deliberate mistake below

    def on_console(message) -> None:
        if message.type == "error" and expected not in message.text:
            errors.append(message.text)

    page.on("console", on_console)
    page.on("pageerror", lambda e: errors.append(str(e)))

    # 1. the signup page: the zone comes from the browser, every series is ticked
    page.goto(f"{base}/")
    assert page.locator("#timezone").input_value() == ZONE
    boxes = page.locator("input[name=series]")
    assert boxes.count() == 2 and all(boxes.nth(i).is_checked() for i in range(2))
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.className") == "skip-link"
    shot(page, artifacts, "01-signup")

    # a mistake first: a friendly message that names the field, focus can jump to it
    page.get_by_label("Email address").fill("maria@")
    page.get_by_role("button", name="Subscribe").click()
    assert page.locator(".notice-error").is_visible()
    assert page.evaluate("document.activeElement.id") == "error-summary"  # announced first
    assert "look like an email address" in page.locator("#email-error").inner_text()
    shot(page, artifacts, "02-signup-error")

    page.get_by_label("Email address").fill("maria@example.org")
    page.get_by_label("First name (optional)").fill("Maria")
    page.get_by_role("button", name="Subscribe").click()
    page.wait_for_url(f"{base}/subscribe")
    assert "check your email" in page.locator("h1").inner_text()
    shot(page, artifacts, "03-check-email")

    # 2. the confirmation email in the outbox
    (mail,) = mails(settings, 1)
    assert "maria@example.org" in mail.to
    confirm_url = link_in(mail.text, "confirm")
    page.goto(confirm_url)
    assert subscriber_row(settings, "maria@example.org").status == "pending"  # GET did nothing
    shot(page, artifacts, "04-confirm")
    page.get_by_role("button", name="Yes, send me the articles").click()
    page.wait_for_selector("#first-article")
    shot(page, artifacts, "05-confirmed")

    sub = subscriber_row(settings, "maria@example.org")
    assert sub.status == ACTIVE and sub.timezone == ZONE and sub.name == "Maria"
    with session_scope(settings.database_url) as s:
        due = s.scalar(
            select(Enrollment.next_due_at).where(
                Enrollment.subscriber_id == sub.id, Enrollment.state == ENROLLED_ACTIVE
            )
        )
    assert due is not None
    local = due.astimezone(ZoneInfo(ZONE))
    shown = page.locator("#first-article").inner_text()
    assert f"{local:%a} {local.day} {local:%b %Y}, {local:%H:%M}" in shown  # web/dates.py
    assert zones.label(ZONE) in shown  # the friendly zone name (web/zones.py)

    # 3. preferences from the welcome email: every two weeks
    welcome = outbox(settings)[-1]
    assert welcome.subject.startswith("Welcome")
    page.goto(link_in(welcome.text, "preferences"))
    assert page.get_by_label("Every week").is_checked()
    shot(page, artifacts, "06-preferences")
    page.get_by_label("Every two weeks").check()
    page.get_by_role("button", name="Save my preferences").click()
    page.wait_for_selector("#saved")
    shot(page, artifacts, "07-preferences-saved")
    assert subscriber_row(settings, "maria@example.org").cadence == "fortnightly"
    assert page.get_by_label("Every two weeks").is_checked()

    # 4. unsubscribe: the page has one button and a way back to preferences
    page.get_by_role("link", name="Unsubscribe from all emails").click()
    expect(page.get_by_role("button", name="Unsubscribe")).to_be_visible()
    assert page.get_by_role("button").count() == 1
    shot(page, artifacts, "08-unsubscribe")
    page.get_by_role("button", name="Unsubscribe").click()
    page.wait_for_selector("text=You're unsubscribed")
    shot(page, artifacts, "09-unsubscribed")
    assert subscriber_row(settings, "maria@example.org").status == "unsubscribed"

    # 5. the archive, and the signup page on a phone
    page.goto(f"{base}/archive")
    shot(page, artifacts, "10-archive")
    page.locator(".parts a").first.click()
    expect(page.locator("article h1")).to_be_visible()
    shot(page, artifacts, "11-archive-article")
    context.close()

    phone = browser.new_context(
        timezone_id=ZONE, viewport={"width": 390, "height": 844}, device_scale_factor=2
    )
    mobile = phone.new_page()
    mobile.goto(f"{base}/")
    width = mobile.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, "the page scrolls sideways on a phone"
    shot(mobile, artifacts, "12-signup-phone")
    mobile.goto(link_in(welcome.text, "preferences"))
    shot(mobile, artifacts, "13-preferences-phone")
    phone.close()
    assert errors == [], errors


def test_expired_or_broken_link_offers_a_new_one(server, browser, artifacts):
    base, settings = server
    context = browser.new_context(timezone_id=ZONE)
    page = context.new_page()
    response = page.goto(f"{base}/confirm/not-a-real-token")
    assert response is not None and response.status == 400
    shot(page, artifacts, "14-broken-link")
    page.get_by_label("Your email address").fill("lost@example.org")
    page.get_by_role("button", name="Send me a new link").click()
    expect(page.locator("h1")).to_contain_text("check your email")
    assert len(mails(settings, 1)) == 1
    context.close()


def test_signup_with_the_keyboard_only(server, browser, artifacts):
    base, settings = server
    context = browser.new_context(timezone_id=ZONE)
    page = context.new_page()
    page.goto(f"{base}/")
    # Tab order: skip link, brand, two nav links, then the form's email field
    for _ in range(5):
        page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "email"
    page.keyboard.type("kim@example.org")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "name"
    page.keyboard.press("Tab")
    focused = page.evaluate("document.activeElement.name")
    assert focused == "series"  # the honeypot is not reachable by Tab
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline != "none", "the focused control must show a focus ring"
    shot(page, artifacts, "15-keyboard-focus")
    page.keyboard.press("Enter")  # Enter in a form submits it
    page.wait_for_url(f"{base}/subscribe")
    assert "check your email" in page.locator("h1").inner_text()
    assert len(mails(settings, 1)) == 1
    context.close()
