"""Her words: the server's words mapped to the ones the admin pages use, and the words they never show.

The therapist never opens a terminal, so her pages don't speak the server's language: no ticks,
workers, outbox, backends, variable or file names. The technical facts live on one page, "About
this server" (/admin/about), the only page allowed to name them; tests/web/test_words.py signs in
and scans every other admin page for BANNED.
"""

from __future__ import annotations

import re
from typing import Final

# What the server calls a thing -> what her pages say instead.
WORDS: Final[dict[str, str]] = {
    "tick": "check (the server looks for what is due every minute)",
    "worker": "sending",
    "beat": "the sending clock",
    "outbox": "Not sent yet — test mode",
    "schedules/": "the server's files",
    "backend": "how mail goes out",
    "reload from schedules/": "Reload from the server's files",
    "save to schedules/": "Save",
    "NEWSLETTER_* variables": "set where the server is configured (About this server)",
}

# How each way of sending mail is named on her pages (settings.mail_backend -> her words).
MAIL_WAYS: Final[dict[str, str]] = {
    "outbox": "Not sent yet — test mode",
    "sendgrid": "SendGrid",
    "smtp": "your mail server (SMTP)",
}

# The page that may name every technical fact; the scan exempts it and only it.
ABOUT_PATH: Final = "/admin/about"

# Word -> the pattern that finds it in a page's visible text (case-insensitive).
BANNED: Final[dict[str, re.Pattern[str]]] = {
    "tick": re.compile(r"\bticks?\b", re.IGNORECASE),
    "worker": re.compile(r"\bworkers?\b", re.IGNORECASE),
    "outbox": re.compile(r"\boutbox\b", re.IGNORECASE),
    "schedules/": re.compile(r"\bschedules/", re.IGNORECASE),
    "backend": re.compile(r"\bbackends?\b", re.IGNORECASE),
    "NEWSLETTER_*": re.compile(r"\bNEWSLETTER_[A-Z_]+"),
    "*.md": re.compile(r"\b[\w-]+\.md\b", re.IGNORECASE),
    "series.yaml": re.compile(r"\bseries\.ya?ml\b", re.IGNORECASE),
    "*.html": re.compile(r"\b[\w-]+\.html\b", re.IGNORECASE),  # a template's file
}


def banned_in(text: str) -> list[tuple[str, str]]:
    """(banned word, what the text says) for each banned word found in `text`."""
    found = []
    for word, pattern in BANNED.items():
        match = pattern.search(text)
        if match:
            start = max(match.start() - 40, 0)
            found.append((word, " ".join(text[start : match.end() + 40].split())))
    return found


def mail_way(backend: str) -> str:
    """How mail goes out, in her words: "SendGrid", "Not sent yet — test mode"."""
    return MAIL_WAYS.get(backend, backend)


def kept_mail(backend: str) -> str:
    """The name of the page of emails kept in test mode: "Not sent yet" while nothing is sent
    for real; once a provider is connected it only holds what test mode kept."""
    return "Not sent yet" if backend == "outbox" else "Kept in test mode"


def test_sent(backend: str) -> str:
    """The notice after "send yourself a test"."""
    if backend == "outbox":
        return "Test kept on the “Not sent yet” page (test mode: nothing is sent for real yet)."
    return f"Test sent through {mail_way(backend)} to the address you gave."


def test_failed(status: str, detail: str) -> str:
    """The notice when a test could not be sent: her words when the provider isn't connected."""
    if status == "unconfigured":
        return (
            "Test not sent: the mail provider isn't connected yet (whoever runs the server can "
            "see why on About this server)."
        )
    return f"Test not sent: {detail}."


def plural(count: int, one: str, many: str | None = None) -> str:
    """ "1 reader", "412 readers"."""
    return f"{count} {one if count == 1 else (many or one + 's')}"
