"""Every email template in real Chromium at phone (375 px) and column (600 px) width, in light
and dark: a full-page screenshot of each in tests/artifacts/, no sideways scroll, the care note
shown, and the dark rules applied (issue 17: screenshots at 375 and 600 px, light and dark)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from email_samples import KINDS, every_email, open_email, write_email

pytestmark = pytest.mark.browser

WIDTHS = (375, 600)
SCHEMES = ("light", "dark")


@pytest.fixture(scope="module")
def email_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each template rendered once for the whole module, saved as a reader's copy."""
    folder = tmp_path_factory.mktemp("emails")
    return {
        kind: write_email(message, folder / f"{kind}.html")
        for kind, message in every_email(folder).items()
    }


def _body_background(browser: Any, path: Path, width: int, scheme: str) -> str:
    page = open_email(browser, path, width, scheme)
    try:
        return str(page.evaluate("getComputedStyle(document.body).backgroundColor"))
    finally:
        page.close()


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("kind", KINDS)
def test_email_screen(
    browser: Any,
    email_files: dict[str, Path],
    artifacts: Path,
    kind: str,
    width: int,
    scheme: str,
) -> None:
    path = email_files[kind]
    page = open_email(browser, path, width, scheme)
    try:
        name = f"email-{kind.replace('_', '-')}-{width}-{scheme}.png"
        page.screenshot(path=str(artifacts / name), full_page=True)
        scroll_width = page.evaluate("document.documentElement.scrollWidth")
        assert scroll_width <= width, f"{kind} scrolls sideways at {width} px: {scroll_width} px"
        care = page.locator(".care-note")
        assert care.count() == 1, f"{kind}: no care note"
        box = care.bounding_box()
        assert box is not None and box["width"] > 0 and box["height"] > 0, (kind, box)
        assert care.is_visible()
        background = page.evaluate("getComputedStyle(document.body).backgroundColor")
    finally:
        page.close()
    if scheme == "dark":  # the email's prefers-color-scheme rules apply
        light = _body_background(browser, path, width, "light")
        assert background != light, f"{kind}: dark body background is light's {light}"
