"""The care note on every email (article, broadcast, confirmation, welcome; HTML and text) and
the reply note on articles, worded from the settings."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import pytest
from paths import ROOT

from newsletter.content.letter import letter
from newsletter.content.series import load_all
from newsletter.core.config import ConfigError, Settings, load_settings
from newsletter.mail.render import Renderer


def _settings(tmp_path: Path, **extra: str) -> Settings:
    return load_settings(
        secret_key="test-secret",
        var_dir=str(tmp_path / "var"),
        templates_dir=ROOT / "templates",
        public_url="https://news.example.org",
        **extra,
    )


def _flat(text: str) -> str:
    return " ".join(re.sub(r"<[^>]+>", " ", text).split())


def _emails(settings: Settings) -> dict[str, tuple[str, str]]:
    renderer = Renderer(settings)
    spec = load_all(ROOT / "schedules")[0]
    note = letter("Closed next week", "Back on the 5th.", "We are closed.\n")
    broadcast = SimpleNamespace(slug="letter-x", title=note.title, kind="broadcast", in_archive=0)
    made = {
        "article": renderer.article(spec, spec.parts[0], len(spec.parts)),
        "broadcast": renderer.article(broadcast, note, 1),
        "confirmation": renderer.confirmation(),
        "welcome": renderer.welcome("Tuesday 3 March at 09:00"),
    }
    return {k: (_flat(m.html), " ".join(m.text.split())) for k, m in made.items()}


def test_every_email_carries_the_default_care_note(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    assert "call or text 988" in settings.care_note
    for kind, (html, text) in _emails(settings).items():
        assert settings.care_note in html, kind
        assert settings.care_note in text, kind
    html, text = _emails(settings)["article"]
    assert settings.reply_note in html and settings.reply_note in text


def test_the_practice_words_its_own_notes(tmp_path: Path) -> None:
    settings = _settings(
        tmp_path,
        care_note="General information only. In an emergency in the UK, call 999 or 111.",
        reply_note="Replies reach Dr Lee, who answers within a week.",
    )
    emails = _emails(settings)
    assert all(
        "call 999 or 111" in html and "call 999 or 111" in text for html, text in emails.values()
    )
    assert "988" not in emails["article"][0]
    assert "answers within a week" in emails["broadcast"][0]


def test_a_broadcast_reads_as_a_letter_and_links_only_when_published(tmp_path: Path) -> None:
    html, text = _emails(_settings(tmp_path))["broadcast"]
    assert "A letter from" in html and "Part 1 of 1" not in html
    assert "A letter from" in text and "part 1 of 1" not in text
    assert "in your browser" not in html  # kept out of the archive: no web copy to link


def test_a_note_on_several_lines_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="NEWSLETTER_CARE_NOTE"):
        _settings(tmp_path, care_note="one\ntwo")
