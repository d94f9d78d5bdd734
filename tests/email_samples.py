"""One rendered email of each kind, shared by the accessibility checks (tests/mail) and the
browser screenshots (tests/browser): importable by name, as conftest modules are not."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

from paths import ROOT

from newsletter.content.letter import letter
from newsletter.content.series import load_all
from newsletter.core.config import Settings, load_settings
from newsletter.mail.message import Message
from newsletter.mail.render import Renderer, personal_values, personalise

KINDS = ("article", "broadcast", "confirmation", "welcome", "already_subscribed", "your_data")


def email_settings(folder: Path) -> Settings:
    return load_settings(
        secret_key="test-secret",
        var_dir=str(folder / "var"),
        templates_dir=ROOT / "templates",
        public_url="https://news.example.org",
    )


def every_email(folder: Path) -> dict[str, Message]:
    """Each template once; the article is the biggest one shipped (the worst case for size)."""
    renderer = Renderer(email_settings(folder))
    specs = load_all(ROOT / "schedules")
    longest = max(
        ((s, p) for s in specs for p in s.parts), key=lambda sp: len(sp[1].body_md)
    )  # the biggest article shipped
    note = letter("Closed next week", "Back on the 5th.", "We are **closed**.\n\n- one\n- two\n")
    broadcast = SimpleNamespace(slug="letter-x", title=note.title, kind="broadcast", in_archive=1)
    return {
        "article": renderer.article(longest[0], longest[1], len(longest[0].parts)),
        "broadcast": renderer.article(broadcast, note, 1),
        "confirmation": renderer.confirmation(),
        "welcome": renderer.welcome("Tuesday 3 March at 09:00", ("Common myths",)),
        "already_subscribed": renderer.already_subscribed(),
        "your_data": renderer.your_data({"subscriber": {"name": "Ana"}}),
    }


def write_email(message: Message, path: Path) -> Path:
    """The HTML part as one reader gets it (placeholders filled), saved for a browser to open."""
    values = personal_values(
        name="Alex",
        unsubscribe_url="https://news.example.org/unsubscribe/T",
        preferences_url="https://news.example.org/preferences/T",
        confirm_url="https://news.example.org/confirm/T",
    )
    path.write_text(personalise(message.html, values))
    return path


def open_email(browser: Any, path: Path, width: int, scheme: str = "light") -> Any:
    """A new Chromium page at this width and colour scheme showing the saved email."""
    page = browser.new_page(viewport={"width": width, "height": 900}, color_scheme=scheme)
    page.goto(path.as_uri())
    return page
