"""Origins as the practice lists them: checked, normalised to what a browser sends."""

from __future__ import annotations

import pytest

from newsletter.core import origins


@pytest.mark.parametrize(
    ("given", "origin"),
    [
        ("https://www.Example.com", "https://www.example.com"),
        ("https://www.example.com/", "https://www.example.com"),
        ("http://127.0.0.1:8765", "http://127.0.0.1:8765"),
        ("https://example.com:443", "https://example.com"),
        ("http://example.com:80", "http://example.com"),
        ("https://[2001:db8::1]:8443", "https://[2001:db8::1]:8443"),
    ],
)
def test_an_origin_is_written_as_a_browser_sends_it(given: str, origin: str) -> None:
    assert origins.origin(given) == origin


@pytest.mark.parametrize(
    ("given", "reason"),
    [
        ("www.example.com", "not a web address"),
        ("ftp://example.com", "not a web address"),
        ("https://example.com/contact", "more than the site's address"),
        ("https://example.com/?x=1", "more than the site's address"),
        ("https://user@example.com", "more than the site's address"),
        ("https://exa mple.com", "does not name a host"),
        ("https://example.com:99999", "port"),
        ("javascript://alert(1)", "not a web address"),
    ],
)
def test_anything_else_is_refused_with_a_reason(given: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        origins.origin(given)


def test_a_list_is_split_normalised_and_deduplicated() -> None:
    text = "https://a.example\nhttps://A.example/ , http://b.example:8080"
    assert origins.origins(text) == ("https://a.example", "http://b.example:8080")
    # a saved list is read leniently: what can't be read is left out, never an error
    assert origins.listed(text + "\nnot-a-site") == (
        "https://a.example",
        "https://a.example",
        "http://b.example:8080",
    )


def test_a_referer_gives_its_origin() -> None:
    assert origins.of_url("https://her.example/about/?q=1#top") == "https://her.example"
    assert origins.of_url("about:blank") is None
    assert origins.of_url("") is None
