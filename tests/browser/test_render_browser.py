"""The article email in real Chromium: 600 px column, no sideways scroll on a phone, dark mode, footer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from email_samples import open_email, write_email
from paths import ROOT

from newsletter.content.series import load_all
from newsletter.core.config import Settings, load_settings
from newsletter.mail.render import Renderer

pytestmark = pytest.mark.browser


@pytest.fixture
def chromium(browser: Any) -> Any:
    """The session's one Chromium (tests/browser/conftest.py): Playwright's sync API allows one."""
    return browser


@pytest.fixture(scope="module")
def email_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("email")
    settings: Settings = load_settings(
        public_url="https://news.example.org",
        templates_dir=ROOT / "templates",
        var_dir=folder,
        secret_key="k",
    )
    spec = load_all(ROOT / "schedules")[0]
    message = Renderer(settings).article(spec, spec.parts[0], len(spec.parts))
    return write_email(message, folder / "article.html")


def test_desktop_column_is_600px_and_footer_visible(
    chromium: Any, email_file: Path, artifacts: Path
) -> None:
    page = open_email(chromium, email_file, 900)
    box = page.locator("table.container").bounding_box()
    assert box is not None and 560 <= box["width"] <= 600
    assert abs((box["x"] + box["width"] / 2) - 450) < 10  # centred
    for name in ("Update your preferences", "Unsubscribe", "View in browser"):
        assert page.get_by_role("link", name=name).is_visible()
    assert not page.locator(".preheader").is_visible()
    assert page.get_by_role("heading", level=1).inner_text().startswith("Myth 1")
    body_size = page.locator(".content p").first.evaluate("e => getComputedStyle(e).fontSize")
    assert body_size == "17px"
    page.screenshot(path=str(artifacts / "email-article-desktop.png"), full_page=True)
    page.close()


def test_phone_has_no_sideways_scroll(chromium: Any, email_file: Path, artifacts: Path) -> None:
    page = open_email(chromium, email_file, 375)
    scroll, client = page.evaluate(
        "[document.documentElement.scrollWidth, document.documentElement.clientWidth]"
    )
    assert scroll <= client
    page.screenshot(path=str(artifacts / "email-article-phone.png"), full_page=True)
    page.close()


def test_dark_mode_changes_the_palette(chromium: Any, email_file: Path, artifacts: Path) -> None:
    colours = {}
    for scheme in ("light", "dark"):
        page = open_email(chromium, email_file, 900, scheme)
        colours[scheme] = page.locator("table.card").evaluate(
            "e => getComputedStyle(e).backgroundColor"
        )
        text = page.locator(".content p").first.evaluate("e => getComputedStyle(e).color")
        if scheme == "dark":
            page.screenshot(path=str(artifacts / "email-article-dark.png"))
            assert text == "rgb(228, 225, 220)"  # light text on the dark card
        page.close()
    assert colours["light"] == "rgb(255, 255, 255)"
    assert colours["dark"] == "rgb(32, 35, 37)"
