"""Every public page carries the care note from the settings."""

from __future__ import annotations

from fastapi.testclient import TestClient

from newsletter.core.config import Settings
from newsletter.web.app import create_app


def test_public_pages_carry_the_care_note(settings: Settings) -> None:
    with TestClient(create_app(settings), base_url="https://news.example.org") as client:
        for path in ("/", "/archive", "/archive/nope/1", "/preferences/not-a-token"):
            page = client.get(path)
            assert settings.care_note in " ".join(page.text.split()), path
