"""The one Markdown set-up: Markdown as readable plain text for the emails' text part."""

from __future__ import annotations

from newsletter.mail.markdown import markdown_html, markdown_text


def test_markdown_text_keeps_links_lists_and_quotes() -> None:
    text = markdown_text(
        "# Heading\n\nRead [our page](https://example.org/a/very/long/path/that/should/not/break/ever)"
        " or write to <mailto:hi@example.org>.\n\n- one\n- two\n\n1. first\n2. second\n\n"
        "> quoted words\n\n---\n\nA *soft*\nbreak and **strong** text.\n"
    )
    assert text == (
        "Heading\n=======\n\n"
        "Read our page\n(https://example.org/a/very/long/path/that/should/not/break/ever) or\n"
        "write to hi@example.org.\n\n"
        "- one\n- two\n\n"
        "1. first\n2. second\n\n"
        "> quoted words\n\n"
        "* * *\n\n"
        "A soft break and strong text.\n"
    )


def test_markdown_html_escapes_raw_html_and_uses_smart_quotes() -> None:
    html = str(markdown_html('<script>x</script> "quoted" -- dash'))
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "\u201cquoted\u201d" in html and "\u2013" in html
