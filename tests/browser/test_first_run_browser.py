"""The first run in a browser, from a fresh `newsletter init`: the printed setup link → the
owner's account → two-factor sign-in turned on (the code computed here with pyotp) → sign out
→ sign in with the password and a code. At desk width and phone width."""

from __future__ import annotations

import time
from pathlib import Path

import pyotp
import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.browser

EMAIL, PASSWORD = "maya@harbour.example", "maya's own long password"


@pytest.mark.parametrize("width", [1280, 390])
def test_first_run_to_two_factor_sign_in(
    browser,
    fresh_server: tuple[str, str],
    artifacts: Path,
    width: int,  # type: ignore[no-untyped-def]
) -> None:
    base, setup_link = fresh_server
    page = browser.new_page(viewport={"width": width, "height": 900})
    shot = f"first-run-{width}"

    page.goto(base + "/admin")  # before the owner exists: only the way to the setup link
    assert "open the setup link printed by the server" in page.inner_text("main")
    assert page.locator("input[name=password]").count() == 0
    page.screenshot(path=str(artifacts / f"{shot}-before-setup.png"), full_page=True)

    page.goto(setup_link)
    page.fill("#name", "Maya Ellis")
    page.fill("#email", EMAIL)
    page.fill("#password", PASSWORD)
    page.screenshot(path=str(artifacts / f"{shot}-setup.png"), full_page=True)
    page.click("button[type=submit]")
    page.wait_for_url(base + "/admin/settings")

    page.click("nav >> text=Your account")
    page.wait_for_url(base + "/admin/account")
    assert page.locator("[data-totp-qr] svg").count() == 1
    secret = page.inner_text("[data-totp-secret]").strip()
    page.screenshot(path=str(artifacts / f"{shot}-enrol.png"), full_page=True)
    page.fill("#code", pyotp.TOTP(secret).now())
    page.click("text=Turn on two-factor sign-in")
    # the click only starts the form's post: wait for the answer's codes before reading them
    expect(page.locator("[data-recovery-codes] code")).to_have_count(10)
    page.screenshot(path=str(artifacts / f"{shot}-recovery-codes.png"), full_page=True)
    page.click("text=Done")
    expect(page.locator("main")).to_contain_text("Recovery codes left: 10")

    page.click("nav >> text=Sign out")
    page.wait_for_url(base + "/admin/login")
    page.fill("#email", EMAIL)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.fill("#code", pyotp.TOTP(secret).at(time.time() + 30))  # the next step: not a reuse
    page.screenshot(path=str(artifacts / f"{shot}-code.png"), full_page=True)
    page.click("button[type=submit]")
    page.wait_for_url(base + "/admin")
    assert page.locator("nav >> text=Accounts").count() == 1
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"{overflow} px of sideways scrolling at {width} px"
    page.close()
