"""Email rendering: every shipped part, inlined CSS, footer links, text part, escaping, template errors."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from paths import ROOT
from typer.testing import CliRunner

from newsletter.content.series import load_all, validate
from newsletter.core.config import Settings, load_settings
from newsletter.mail import markdown, render, templates
from newsletter.mail.message import ARTICLE, CONFIRMATION, WELCOME
from newsletter.mail.render import (
    CONFIRM_URL,
    GREETING,
    GREETING_HTML,
    PREFERENCES_URL,
    UNSUBSCRIBE_URL,
    Renderer,
    personal_values,
    personalise,
)

SCHEDULES = ROOT / "schedules"
PUBLIC = "https://news.example.org"


@pytest.fixture
def conf(tmp_path: Path) -> Settings:
    """Plain settings (no database needed): templates from the repo, a fixed public URL."""
    return load_settings(
        public_url=PUBLIC,
        templates_dir=ROOT / "templates",
        schedules_dir=SCHEDULES,
        var_dir=tmp_path / "var",
        secret_key="test-secret",
        from_name="Quiet Harbour Therapy",
        postal_address="12 Example Road, Springfield, NY 10001, USA",
    )


def values(name: str | None = "Anna") -> dict[str, str]:
    return personal_values(
        name=name,
        unsubscribe_url=f"{PUBLIC}/unsubscribe/TOKEN-U",
        preferences_url=f"{PUBLIC}/preferences/TOKEN-P",
        confirm_url=f"{PUBLIC}/confirm/TOKEN-C",
    )


def words(text: str) -> str:
    """Whitespace- and quote-normalised text, to compare prose across HTML/text/Markdown."""
    text = text.replace("\u2019", "'").replace("\u2018", "'").replace("\u201c", '"')
    return " ".join(text.replace("\u201d", '"').split())


def style_blocks(html: str) -> list[str]:
    """<style> blocks outside conditional comments (Outlook-only blocks don't count)."""
    html = re.sub(r"<!--.*?-->", "", html, flags=re.S)
    return re.findall(r"<style[^>]*>(.*?)</style>", html, flags=re.S)


def strip_media(css: str) -> str:
    """Remove @media blocks (balanced braces); what is left would be layout CSS."""
    out, i = [], 0
    while i < len(css):
        if css.startswith("@media", i):
            depth, j = 0, css.index("{", i)
            while True:
                depth += {"{": 1, "}": -1}.get(css[j], 0)
                j += 1
                if depth == 0:
                    break
            i = j
        else:
            out.append(css[i])
            i += 1
    return "".join(out)


def shipped() -> list[tuple[Any, Any]]:
    return [(spec, part) for spec in load_all(SCHEDULES) for part in spec.parts]


@pytest.mark.parametrize(("spec", "part"), shipped(), ids=lambda x: getattr(x, "filename", ""))
def test_every_shipped_part_renders(conf: Settings, spec: Any, part: Any) -> None:
    message = Renderer(conf).article(spec, part, len(spec.parts))
    assert message.kind == ARTICLE
    assert (message.series, message.part, message.categories) == (
        spec.slug,
        part.number,
        (spec.slug,),
    )
    assert message.subject == part.title
    assert message.preheader == part.summary

    # HTML: a whole document, lang set, every table presentational, no images (no pixels).
    html = message.html
    assert html.startswith("<!DOCTYPE html>")
    assert '<html lang="en"' in html
    tables = re.findall(r"<table\b[^>]*>", html)
    assert tables and all('role="presentation"' in t for t in tables)
    assert "<img" not in html
    assert '<meta name="color-scheme" content="light dark">' in html
    assert '<meta name="supported-color-schemes" content="light dark">' in html
    assert words(part.summary) in words(re.sub(r"<[^>]+>", " ", html))
    first_sentence = part.body_md.split(".")[0]
    assert words(first_sentence) in words(re.sub(r"<[^>]+>", " ", html))

    # Text: the article's words (every paragraph), the unsubscribe and preferences links.
    text = personalise(message.text, values())
    for paragraph in part.body_md.split("\n\n"):
        plain = re.sub(r"^(#+|-|\d+\.)\s+", "", paragraph.strip(), flags=re.M)
        plain = re.sub(r"\[([^\]]+)\]\(([^)]+)\)", r"\1 (\2)", plain).replace("**", "")
        plain = plain.replace("*", "").replace("_", "")
        for line in plain.splitlines():
            assert words(line) in words(text), line
    assert f"Unsubscribe: {PUBLIC}/unsubscribe/TOKEN-U" in text
    assert f"{PUBLIC}/preferences/TOKEN-P" in text
    assert f"{PUBLIC}/archive/{spec.slug}/{part.number}" in text
    assert "Hi Anna," in text
    assert max(len(line) for line in text.splitlines() if "://" not in line) <= 78


def test_css_is_inlined_and_layout_needs_no_style_block(conf: Settings) -> None:
    spec = load_all(SCHEDULES)[0]
    html = Renderer(conf).article(spec, spec.parts[0], 4).html
    # Anything left in <style> is progressive enhancement only (dark mode, small screens).
    for block in style_blocks(html):
        assert "@media" in block
        assert strip_media(block).strip() == ""
    # The layout itself sits in style attributes.
    card = re.search(r'<table[^>]*class="card"[^>]*>', html)
    assert card and "background-color: #ffffff" in card.group(0)
    assert re.search(r'<td[^>]*class="card-cell"[^>]*style="[^"]*padding:', html)
    paragraphs = re.findall(r"<p\b[^>]*>", html)
    assert paragraphs and all("style=" in p for p in paragraphs)
    assert re.search(r'<table[^>]*class="container"[^>]*style="[^"]*max-width: 600px', html)
    assert "<!--[if mso]>" in html  # Outlook's fixed-width ghost table survives inlining
    assert re.search(r'<div class="preheader"[^>]*style="[^"]*display: none', html)


def test_footer_links_and_sender(conf: Settings) -> None:
    spec = load_all(SCHEDULES)[0]
    message = Renderer(conf).article(spec, spec.parts[1], 4)
    html = personalise(message.html, values())
    assert f'href="{PUBLIC}/preferences/TOKEN-P"' in html
    assert f'href="{PUBLIC}/unsubscribe/TOKEN-U"' in html
    assert f'href="{PUBLIC}/archive/{spec.slug}/2"' in html
    assert "Quiet Harbour Therapy" in html
    assert "12 Example Road, Springfield, NY 10001, USA" in html
    assert "Part 2 of 4" in html


def test_placeholders_survive_css_inlining(conf: Settings) -> None:
    renderer = Renderer(conf)
    spec = load_all(SCHEDULES)[0]
    article = renderer.article(spec, spec.parts[0], 4)
    for placeholder in (GREETING_HTML, UNSUBSCRIBE_URL, PREFERENCES_URL):
        assert placeholder in article.html
    for placeholder in (GREETING, UNSUBSCRIBE_URL, PREFERENCES_URL):
        assert placeholder in article.text
    confirmation = renderer.confirmation()
    assert f'href="{CONFIRM_URL}"' in confirmation.html
    assert CONFIRM_URL in confirmation.text
    # After personalising no placeholder is left anywhere.
    for message in (article, confirmation, renderer.welcome("Tuesday 3 March at 09:00")):
        for body in (message.html, message.text):
            assert "%%NL_" not in personalise(body, values())
        assert "%%" not in message.subject


def test_script_in_name_is_escaped_after_personalise(conf: Settings) -> None:
    spec = load_all(SCHEDULES)[0]
    message = Renderer(conf).article(spec, spec.parts[0], 4)
    evil = values('<script>alert("x")</script> & Co')
    html = personalise(message.html, evil)
    assert "<script" not in html
    assert "Hi &lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; Co," in html
    # The plain-text part is not HTML: the name appears as typed, on one line.
    assert 'Hi <script>alert("x")</script> & Co,' in personalise(message.text, evil)


def test_raw_html_and_scripts_in_markdown_are_escaped(conf: Settings) -> None:
    series = SimpleNamespace(slug="s", title="S")
    part = SimpleNamespace(
        number=1,
        title="Tom & <Jerry>",
        summary="A <b>summary</b>",
        body_md="Hello <script>alert(1)</script> and <b>bold</b>.\n\n[click](javascript:alert(1))\n",
    )
    message = Renderer(conf).article(series, part, 1)
    assert "<script" not in message.html and "<b>" not in message.html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in message.html
    assert 'href="javascript' not in message.html
    assert "Tom &amp; &lt;Jerry&gt;" in message.html
    assert message.subject == "Tom & <Jerry>"


def test_missing_template_variable_fails_validation(conf: Settings, tmp_path: Path) -> None:
    templates = tmp_path / "templates"
    shutil.copytree(ROOT / "templates", templates)
    article = templates / "email" / "article.html"
    lines = article.read_text().splitlines()
    lines.insert(3, "<p>Call us on {{ therapist_phone }}</p>")
    article.write_text("\n".join(lines) + "\n")
    broken = conf.model_copy(update={"templates_dir": templates})

    renderer = Renderer(broken)
    problems = validate(SCHEDULES, check=renderer.check)
    assert len(problems) == 6  # every shipped part, each named
    first = problems[0]
    assert first.startswith(f"{article}:4: undefined variable: 'therapist_phone' is undefined")
    assert first.endswith("01-going-to-therapy-means-youre-weak.md)")
    assert renderer.check_templates() == []  # confirmation and welcome don't use article.html

    (templates / "email" / "base.txt").write_text("{{ nope }}\n")
    problems = Renderer(broken).check_templates()
    assert len(problems) == 3  # confirmation, welcome, already subscribed
    assert problems[0].startswith(f"{templates}/email/base.txt:1: undefined variable: 'nope'")


def test_template_syntax_error_is_reported(conf: Settings, tmp_path: Path) -> None:
    templates = tmp_path / "templates"
    shutil.copytree(ROOT / "templates", templates)
    (templates / "email" / "welcome.txt").write_text("line one\n{% if %}\n")
    problems = Renderer(conf.model_copy(update={"templates_dir": templates})).check_templates()
    assert problems == [
        f"{templates}/email/welcome.txt:2: template syntax error: Expected an expression, got 'end of statement block'"
    ]


def test_cli_validate_reports_template_errors(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from newsletter.cli import app
    from newsletter.core.config import get_settings

    templates = tmp_path / "templates"
    shutil.copytree(ROOT / "templates", templates)
    (templates / "email" / "article.txt").write_text("{{ missing_thing }}\n")
    monkeypatch.setenv("NEWSLETTER_TEMPLATES_DIR", str(templates))
    get_settings.cache_clear()
    result = CliRunner().invoke(app, ["series", "validate"])
    assert result.exit_code == 1
    assert f"{templates}/email/article.txt:1: undefined variable: 'missing_thing'" in result.output


def test_article_is_rendered_and_inlined_once(conf: Settings) -> None:
    renderer = Renderer(conf)
    calls: list[int] = []
    real = renderer.inliner

    class Counting:
        def inline(self, html: str) -> str:
            calls.append(1)
            return str(real.inline(html))

    renderer.inliner = Counting()  # type: ignore[assignment]
    spec = load_all(SCHEDULES)[0]
    first = renderer.article(spec, spec.parts[0], 4)
    again = renderer.article(spec, spec.parts[0], 4)
    assert again is first and len(calls) == 1
    # An edited part (new content hash) renders afresh.
    edited = SimpleNamespace(
        number=1,
        title=spec.parts[0].title,
        summary=spec.parts[0].summary,
        body_md="Edited text.\n",
        content_hash="other",
    )
    assert "Edited text." in renderer.article(spec, edited, 4).html
    assert len(calls) == 2


def test_confirmation_and_welcome(conf: Settings) -> None:
    renderer = Renderer(conf)
    confirmation = renderer.confirmation()
    assert confirmation.kind == CONFIRMATION
    assert (confirmation.series, confirmation.part) == (None, None)
    assert "confirm" in confirmation.subject.lower()
    assert "Quiet Harbour Therapy" in confirmation.html
    assert f'href="{UNSUBSCRIBE_URL}"' in confirmation.html

    welcome = renderer.welcome(
        "Tuesday 3 March at 09:00 (Europe/London)",
        series_titles=("Common Myths About Psychotherapy",),
    )
    assert welcome.kind == WELCOME and welcome.series is None
    for body in (welcome.html, welcome.text):
        assert "Tuesday 3 March at 09:00 (Europe/London)" in body
        assert "Common Myths About Psychotherapy" in body
    assert f'href="{PREFERENCES_URL}"' in welcome.html
    assert "12 Example Road" in welcome.text


def test_preview_command(settings: Settings) -> None:
    from newsletter.cli import app

    runner = CliRunner()
    result = runner.invoke(app, ["series", "preview", "myths-about-psychotherapy", "1"])
    assert result.exit_code == 0, result.output
    assert "<!DOCTYPE html>" in result.stdout
    assert "Hi Alex," in result.stdout
    assert f"{settings.public_url}/unsubscribe/" in result.stdout
    assert "%%NL_" not in result.stdout

    result = runner.invoke(app, ["series", "preview", "myths-about-psychotherapy", "1", "--text"])
    assert result.exit_code == 0
    assert "<html" not in result.stdout and "Unsubscribe: https://" in result.stdout

    result = runner.invoke(app, ["series", "preview", "myths-about-psychotherapy", "7"])
    assert result.exit_code == 1
    assert "parts 1 to 4" in result.output


def test_module_docstrings_are_one_line() -> None:
    for module in (render, markdown, templates):
        assert module.__doc__ and "\n" not in module.__doc__.strip(), module.__name__


def test_shared_renderer_renders_once_and_sees_template_edits(
    conf: Settings, tmp_path: Path
) -> None:
    templates = tmp_path / "templates"
    shutil.copytree(ROOT / "templates", templates)
    own = conf.model_copy(update={"templates_dir": templates})
    series = SimpleNamespace(slug="s", title="S")
    part = SimpleNamespace(number=1, title="T", summary="Sum", body_md="Body text.\n")

    first = render.shared_renderer(own)
    assert render.shared_renderer(own) is first  # a worker keeps one per settings
    message = first.article(series, part, 1)
    assert render.shared_renderer(own).article(series, part, 1) is message  # rendered once
    assert render.shared_renderer(conf) is not first  # other settings, other renderer

    sign_off = templates / "email" / "article.txt"
    sign_off.write_text(
        sign_off.read_text().replace("{{ practice.signoff }}", "Edited footer line.")
    )
    fresh = render.shared_renderer(own)
    assert fresh is not first
    assert "Edited footer line." in fresh.article(series, part, 1).text


def test_the_sign_off_setting_ends_every_email(conf: Settings) -> None:
    spec = load_all(SCHEDULES)[0]
    default = Renderer(conf).article(spec, spec.parts[0], 4)
    assert f"Warmly,\n{conf.practice}" in default.text
    own = conf.model_copy(update={"sign_off": "With care,\nMaya <Ellis>"})
    message = Renderer(own).article(spec, spec.parts[0], 4)
    assert "With care,\nMaya <Ellis>" in message.text and "Warmly," not in message.text
    assert "With care,<br>Maya &lt;Ellis&gt;" in message.html
    data = Renderer(own.model_copy(update={"practice_name": "Harbour Therapy"}))
    assert data.your_data({}).subject == "Your data at Harbour Therapy"
