"""The therapist in Chromium edits a reader, sends her part 2 again, then corrects a sent
article and sends the correction: each lands once, shows on the reader's page, and the archive
says "Corrected on …". At 1280 and 390 px (the settings fixture runs it on both databases)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from browser_support import ADMIN_PASSWORD, MYTHS, reader_with_two_parts
from playwright.sync_api import expect

from newsletter.core.config import Settings

pytestmark = pytest.mark.browser

ADDED = "One sentence the correction adds."


@pytest.mark.parametrize("width", [1280, 390])
def test_edit_a_reader_send_part_two_again_and_correct_a_sent_article(
    own_schedules: Path,
    admin_server: tuple[str, Settings],
    browser: Any,
    artifacts: Path,
    width: int,
) -> None:
    base, settings = admin_server
    assert Path(settings.schedules_dir) == own_schedules
    sub = reader_with_two_parts(settings)
    outbox = Path(settings.outbox_dir)
    before = set(outbox.glob("*.eml"))
    context = browser.new_context(locale="en-GB", viewport={"width": width, "height": 900})
    page = context.new_page()
    page.goto(f"{base}/admin/login")
    page.fill("#password", ADMIN_PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/admin")

    page.goto(f"{base}/admin/subscribers/{sub}")
    page.fill("#edit-name", "Maya R. Reader")
    page.select_option("#edit-timezone", "Asia/Tokyo")
    page.click("button:has-text('Save their details')")
    page.wait_for_url(f"{base}/admin/subscribers/{sub}")
    expect(page.locator("#activity")).to_contain_text("time zone Europe/London → Asia/Tokyo")
    page.select_option("#again-part", f"{MYTHS}/2")
    page.click("button:has-text('Send it now')")
    page.wait_for_url(f"{base}/admin/subscribers/{sub}")
    expect(page.locator("#activity")).to_contain_text("Part sent again")
    page.screenshot(path=str(artifacts / f"admin-reader-tools-{width}.png"), full_page=True)
    again = set(outbox.glob("*.eml")) - before
    assert len(again) == 1 and "Maya R. Reader" in next(iter(again)).read_text()

    page.goto(f"{base}/admin/series")
    page.click(f"a[href='/admin/series/{MYTHS}/1/correct']")
    page.wait_for_url(f"{base}/admin/series/{MYTHS}/1/correct")
    body = page.input_value("#c-body")
    page.fill("#c-body", f"{body}\n\n{ADDED}")
    page.check("#c-send")
    page.screenshot(path=str(artifacts / f"admin-correction-{width}.png"), full_page=True)
    page.click("button:has-text('Save the correction')")
    page.wait_for_url(f"{base}/admin/series/{MYTHS}/1/correct")
    expect(page.locator("body")).to_contain_text("Sent to 1 reader who had it")
    fixed = set(outbox.glob("*.eml")) - before - again
    assert len(fixed) == 1 and ADDED in next(iter(fixed)).read_text()
    assert ADDED in (own_schedules / MYTHS).joinpath(sorted(
        p.name for p in (own_schedules / MYTHS).glob("01-*.md")
    )[0]).read_text()  # fmt: skip

    page.goto(f"{base}/archive/{MYTHS}/1")
    expect(page.locator("article")).to_contain_text(ADDED)
    expect(page.locator("p.corrected")).to_contain_text("Corrected on ")
    page.screenshot(path=str(artifacts / f"archive-corrected-{width}.png"), full_page=True)
    context.close()
