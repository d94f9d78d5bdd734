"""The archive as RSS 2.0 and Atom: published parts and broadcasts only, full text, read back
by feedparser with no bozo; the archive page links them with <link rel="alternate">."""

from __future__ import annotations

import re
from xml.etree import ElementTree

import feedparser
import pytest
from engine_support import add_person, ship, utc
from fastapi.testclient import TestClient

from newsletter.content.letter import letter
from newsletter.core.config import Settings
from newsletter.engine.tick import tick
from newsletter.mail.markdown import markdown_html
from newsletter.services import broadcasts
from newsletter.web.app import create_app

MONDAY = utc(2027, 2, 1, 12, 0)


def _broadcast(settings: Settings, title: str, body: str, archive: bool) -> str:
    info = broadcasts.create(
        settings,
        letter(title, "A short summary & more.", body),
        broadcasts.parse_audience("all"),
        broadcasts.parse_when("now", settings, MONDAY),
        in_archive=archive,
        now=MONDAY,
    )
    return info.slug


def _setup(settings: Settings) -> tuple[str, str]:
    ship(settings, MONDAY)
    add_person(settings, MONDAY, "Europe/London")
    public = _broadcast(settings, "A new group <starts> in March", "Join us *soon*.\n", True)
    private = _broadcast(settings, "Only for readers", "Not on the web.\n", False)
    tick(settings, MONDAY)  # both letters go out
    tick(settings, utc(2027, 2, 3, 9, 0))  # myths part 1 (moved off the letters' day)
    return public, private


def test_rss_and_atom_list_what_was_published_in_full(settings: Settings) -> None:
    public, private = _setup(settings)
    with TestClient(create_app(settings), base_url="https://news.example.org") as client:
        for path, version in (("/archive/rss.xml", "rss20"), ("/archive/atom.xml", "atom10")):
            response = client.get(path)
            assert response.status_code == 200
            assert "xml" in response.headers["content-type"]
            feed = feedparser.parse(response.content)
            assert feed.bozo == 0, feed.get("bozo_exception")
            assert feed.version == version
            links = [e.link for e in feed.entries]
            assert links == [
                "https://news.example.org/archive/myths-about-psychotherapy/1",
                f"https://news.example.org/archive/{public}/1",
            ], path  # newest first; the private letter and unsent parts are not there
            letter_entry = feed.entries[1]
            assert letter_entry.title == "A new group <starts> in March"
            content = letter_entry.content[0].value
            assert "<em>soon</em>" in content  # the full text, as HTML
            assert settings.care_note in content
            assert private not in response.text


def test_the_archive_page_links_the_feeds_and_lists_published_letters(
    settings: Settings,
) -> None:
    public, private = _setup(settings)
    with TestClient(create_app(settings), base_url="https://news.example.org") as client:
        page = client.get("/archive").text
        alternates = re.findall(r'<link rel="alternate" type="([^"]+)"[^>]*href="([^"]+)"', page)
        assert alternates == [
            ("application/rss+xml", "/archive/rss.xml"),
            ("application/atom+xml", "/archive/atom.xml"),
        ]
        assert "Letters from the practice" in page and f"/archive/{public}/1" in page
        assert private not in page
        assert client.get(f"/archive/{public}/1").status_code == 200
        assert client.get(f"/archive/{private}/1").status_code == 404


def test_an_empty_archive_is_still_a_valid_feed(settings: Settings) -> None:
    with TestClient(create_app(settings), base_url="https://news.example.org") as client:
        for path in ("/archive/rss.xml", "/archive/atom.xml"):
            feed = feedparser.parse(client.get(path).content)
            assert feed.bozo == 0 and feed.entries == []


# Every character XML 1.0 can't carry (or discourages), as they could reach the practice's values
# behind the Settings page's back or through an older version that let them in.
NOT_XML = ["\x00", "\x01", "\x08", "\x0b", "\x0c", "\x1f", "\x7f", "\x85", "\x9f", "\ufffe"]


@pytest.mark.parametrize("char", NOT_XML, ids=[f"U+{ord(c):04X}" for c in NOT_XML])
def test_a_control_character_in_the_practice_values_never_breaks_the_feeds(
    settings: Settings, char: str
) -> None:
    """A `\\x0b` in the sender name made RSS and Atom invalid XML: the feed builder now turns
    every character XML can't carry into a space, whatever is stored."""
    public, _ = _setup(settings)
    # unchecked, as a value stored before the checks would be (PostgreSQL can't store U+0000)
    bad = settings.model_copy(
        update={"from_name": f"Calm{char}Practice", "care_note": f"Not{char}advice"}
    )
    with TestClient(create_app(bad), base_url="https://news.example.org") as client:
        for path in ("/archive/rss.xml", "/archive/atom.xml"):
            body = client.get(path).content
            ElementTree.fromstring(body)  # a strict XML parser: raises on an illegal character
            feed = feedparser.parse(body)
            assert feed.bozo == 0, (path, feed.get("bozo_exception"))
            assert feed.feed.title == "Calm Practice"
            assert "Not advice" in feed.entries[1].content[0].value
            assert feed.entries[1].link.endswith(f"/archive/{public}/1")


def test_the_archive_and_the_feeds_render_markdown_as_the_email_does(settings: Settings) -> None:
    """One Markdown set-up (mail.markdown): smart quotes and dashes on the page and in the feed
    as in the email; a letter kept out of the archive has no page (the one published filter)."""
    ship(settings, MONDAY)
    add_person(settings, MONDAY, "Europe/London")
    body = 'She said "yes" -- twice.\n'
    public = _broadcast(settings, "Quotes", body, True)
    private = _broadcast(settings, "Private quotes", body, False)
    tick(settings, MONDAY)
    email_html = str(markdown_html(body))
    assert "“yes”" in email_html
    with TestClient(create_app(settings), base_url="https://news.example.org") as client:
        assert email_html in client.get(f"/archive/{public}/1").text
        feed = feedparser.parse(client.get("/archive/atom.xml").content)
        assert [e.title for e in feed.entries] == ["Quotes"]
        assert email_html in feed.entries[0].content[0].value
        assert client.get(f"/archive/{private}/1").status_code == 404


def test_the_feeds_are_titled_with_the_practice_name(settings: Settings) -> None:
    named = settings.model_copy(
        update={"practice_name": "Harbour Therapy", "from_name": "Dr Maya Ellis"}
    )
    client = TestClient(create_app(named), base_url="https://news.example.org")
    for path in ("/archive/rss.xml", "/archive/atom.xml"):
        parsed = feedparser.parse(client.get(path).text)
        assert parsed.feed.title == "Harbour Therapy", path
