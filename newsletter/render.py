"""Email rendering: Jinja (StrictUndefined) + Markdown + css-inline, once per article; placeholders per person."""

from __future__ import annotations

import html
from collections.abc import Mapping

# Personal values are not rendered per recipient: each message is rendered once with these
# placeholders, and a backend (or SendGrid, as substitutions) swaps in each recipient's values.
GREETING = "%%NL_GREETING%%"  # plain text: "Hi Anna," / "Hello,"
GREETING_HTML = "%%NL_GREETING_HTML%%"  # the same, HTML-escaped
UNSUBSCRIBE_URL = "%%NL_UNSUBSCRIBE_URL%%"
PREFERENCES_URL = "%%NL_PREFERENCES_URL%%"
CONFIRM_URL = "%%NL_CONFIRM_URL%%"


def _one_line(value: str) -> str:
    return " ".join(value.split())


def personal_values(
    *,
    name: str | None,
    unsubscribe_url: str,
    preferences_url: str,
    confirm_url: str = "",
) -> dict[str, str]:
    """Placeholder -> this recipient's value (HTML-escaped for the HTML variants)."""
    clean = _one_line(name or "")
    greeting = f"Hi {clean}," if clean else "Hello,"
    return {
        GREETING: greeting,
        GREETING_HTML: html.escape(greeting),
        UNSUBSCRIBE_URL: unsubscribe_url,
        PREFERENCES_URL: preferences_url,
        CONFIRM_URL: confirm_url,
    }


def personalise(text: str, values: Mapping[str, str]) -> str:
    """Fill the placeholders in one rendered string."""
    for key, value in values.items():
        if key in text:
            text = text.replace(key, value)
    return text
