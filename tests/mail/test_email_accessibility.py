"""Accessibility of every email template: `lang`, one h1 and no skipped heading levels, link
text that makes sense alone, colour contrast >= 4.5:1 in light and dark, under 102 KB (Gmail
clips larger messages)."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from email_samples import KINDS, every_email
from paths import ROOT

from newsletter.mail.message import Message

GMAIL_CLIP = 102 * 1024
VAGUE_LINKS = {"here", "click here", "link", "this link", "more", "read more", "this"}


class _Page(HTMLParser):
    """Headings, links and (text colour, background) pairs of inline-styled text."""

    VOID = {"meta", "br", "img", "hr", "input", "link"}

    def __init__(self) -> None:
        super().__init__()
        self.lang: str | None = None
        self.headings: list[int] = []
        self.links: list[str] = []
        self.pairs: set[tuple[str, str, str]] = set()
        self._stack: list[tuple[str, str | None, str | None, bool]] = []  # tag, bg, fg, hidden
        self._link: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "html":
            self.lang = a.get("lang")
        style = (a.get("style") or "").lower()
        bg = _prop(style, "background-color") or a.get("bgcolor")
        fg = _prop(style, "color")
        hidden = "display: none" in style or "display:none" in style
        parent_bg = next((s[1] for s in reversed(self._stack) if s[1]), "#ffffff")
        parent_hidden = any(s[3] for s in self._stack)
        if re.fullmatch(r"h[1-6]", tag):
            self.headings.append(int(tag[1]))
        if tag == "a":
            self._link = []
        if fg and not (hidden or parent_hidden):
            self.pairs.add((tag, fg, bg or parent_bg))
        if tag not in self.VOID:
            self._stack.append((tag, bg, fg, hidden))

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self._link is not None:
            self.links.append(" ".join("".join(self._link).split()))
            self._link = None
        while self._stack:
            if self._stack.pop()[0] == tag:
                break

    def handle_data(self, data: str) -> None:
        if self._link is not None:
            self._link.append(data)


def _prop(style: str, name: str) -> str | None:
    found = re.search(rf"(?:^|;)\s*{name}\s*:\s*(#[0-9a-f]{{3,6}})", style)
    return found.group(1) if found else None


def _luminance(colour: str) -> float:
    value = colour.lstrip("#")
    if len(value) == 3:
        value = "".join(c * 2 for c in value)
    channels = [int(value[i : i + 2], 16) / 255 for i in (0, 2, 4)]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast(a: str, b: str) -> float:
    high, low = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def _parsed(message: Message) -> _Page:
    page = _Page()
    page.feed(message.html)
    return page


@pytest.mark.parametrize("kind", KINDS)
def test_lang_headings_and_link_text(kind: str, tmp_path: Path) -> None:
    page = _parsed(every_email(tmp_path)[kind])
    assert page.lang == "en"
    assert page.headings and page.headings[0] == 1 and page.headings.count(1) == 1
    for before, after in zip(page.headings, page.headings[1:], strict=False):
        assert after <= before + 1, page.headings  # no skipped level
    assert page.links
    for text in page.links:
        assert text and text.lower() not in VAGUE_LINKS, text


@pytest.mark.parametrize("kind", KINDS)
def test_light_colours_have_enough_contrast(kind: str, tmp_path: Path) -> None:
    page = _parsed(every_email(tmp_path)[kind])
    assert page.pairs
    for tag, fg, bg in page.pairs:
        assert contrast(fg, bg) >= 4.5, (tag, fg, bg, round(contrast(fg, bg), 2))


def test_dark_colours_have_enough_contrast() -> None:
    """The dark-mode rules (kept as a <style> block): each text colour against the dark
    background it sits on (the card inside, the page around the footer)."""
    css = (ROOT / "templates" / "email" / "base.html").read_text()
    dark = css[css.index("prefers-color-scheme: dark") :]
    page_bg, card_bg = "#161819", "#202325"
    rules = dict(re.findall(r"([^{}]+)\{\s*color:\s*(#[0-9a-fA-F]{6}) !important;\s*\}", dark))
    assert rules, "no dark colour rules found"
    for selectors, colour in rules.items():
        for selector in (s.strip() for s in selectors.split(",")):
            if selector == ".preheader":
                continue  # hidden on purpose: its colour is the background's
            on_page = selector.startswith((".footer", ".browser", ".masthead"))
            bg = page_bg if on_page else card_bg
            assert contrast(colour, bg) >= 4.5, (selector, colour, bg)
    care = re.search(r"\.care-note \{ background-color: (#\w+) !important;.*? color: (#\w+)", dark)
    assert care and contrast(care.group(2), care.group(1)) >= 4.5


@pytest.mark.parametrize("kind", KINDS)
def test_under_gmails_clipping_size(kind: str, tmp_path: Path) -> None:
    message = every_email(tmp_path)[kind]
    assert len(message.html.encode()) < GMAIL_CLIP
    assert len(message.text.encode()) < GMAIL_CLIP
