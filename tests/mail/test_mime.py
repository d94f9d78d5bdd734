"""MIME builder: CR/LF in names, subjects and URLs can never add a header."""

from __future__ import annotations

from email import policy
from email.message import EmailMessage
from email.parser import BytesParser

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from newsletter.core.config import load_settings
from newsletter.mail import mime, render
from newsletter.mail.message import ARTICLE, CONFIRMATION, Message, Recipient

SETTINGS = load_settings(from_name="Example Practice", public_url="https://news.example.org")
KNOWN = {
    "from",
    "to",
    "reply-to",
    "subject",
    "date",
    "message-id",
    "list-unsubscribe",
    "list-unsubscribe-post",
    "mime-version",
    "content-type",
}


def build(
    subject: str, name: str | None, url: str = "https://news.example.org/unsubscribe/t"
) -> EmailMessage:
    msg = Message(kind=ARTICLE, subject=subject, html="<p>hi</p>", text="hi", series="s", part=1)
    rcpt = Recipient("1", "anna@example.net", name, url)
    data = mime.to_bytes(mime.build(SETTINGS, msg, rcpt))
    parsed = BytesParser(policy=policy.default).parsebytes(data)
    assert isinstance(parsed, EmailMessage)
    return parsed


@pytest.mark.parametrize(
    ("subject", "name"),
    [
        ("Hello\r\nBcc: evil@example.com", "Anna"),
        ("Hello", "Anna\r\nBcc: evil@example.com"),
        ("Hello\nX-Injected: 1", "Anna\rX-Injected: 2"),
        ("Hello\r\n\r\n<html>body</html>", None),
        ("Hi", '"Anna" <evil@example.com>\r\nCc: x@example.com'),
    ],
)
def test_cr_lf_cannot_add_headers(subject: str, name: str | None) -> None:
    mail = build(subject, name)
    assert {k.lower() for k in mail} <= KNOWN
    assert mail["Bcc"] is None and mail["Cc"] is None and mail["X-Injected"] is None
    assert "\n" not in str(mail["Subject"]) and "\r" not in str(mail["Subject"])
    assert mail["To"].addresses[0].addr_spec == "anna@example.net"
    assert len(mail["To"].addresses) == 1


def test_cr_lf_in_unsubscribe_url_cannot_add_headers() -> None:
    mail = build("Hi", "Anna", "https://news.example.org/unsubscribe/t\r\nBcc: evil@example.com")
    assert mail["Bcc"] is None
    with pytest.raises(ValueError):
        build("Hi", "Anna", "https://x/>, <mailto:evil@example.com")


def test_address_with_cr_lf_is_refused() -> None:
    with pytest.raises(ValueError):
        mime.address(None, "anna@example.net\r\nBcc: evil@example.com")
    with pytest.raises(ValueError):
        mime.address(None, "a@b.org, c@d.org")


@settings(max_examples=200, deadline=None)
@given(subject=st.text(max_size=80), name=st.text(max_size=60))
def test_no_text_adds_a_header(subject: str, name: str) -> None:
    mail = build(subject, name)
    assert {k.lower() for k in mail} <= KNOWN
    assert len(mail["To"].addresses) == 1
    assert mail["To"].addresses[0].addr_spec == "anna@example.net"


def test_headers_and_structure() -> None:
    msg = Message(
        kind=ARTICLE,
        subject="Part 1",
        html=f"<p>{render.GREETING_HTML}</p>",
        text=f"{render.GREETING}",
        series="s",
        part=1,
    )
    values = render.personal_values(
        name="Zoë", unsubscribe_url="https://u", preferences_url="https://p"
    )
    mail = mime.build(SETTINGS, msg, Recipient("42", "zoe@example.net", "Zoë", "https://u", values))
    assert mail["From"] == "Example Practice <newsletter@example.com>"
    assert mail["List-Unsubscribe"] == "<https://u>"
    assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert mail["Message-ID"].startswith("<42.") and mail["Message-ID"].endswith("@example.com>")
    assert [p.get_content_type() for p in mail.iter_parts()] == ["text/plain", "text/html"]
    assert "Hi Zoë," in next(mail.iter_parts()).get_content()
    assert b"Zo=C3=AB" in mime.to_bytes(mail) or b"=?utf-8?" in mime.to_bytes(mail)


def test_no_unsubscribe_headers_without_a_url() -> None:
    msg = Message(kind=CONFIRMATION, subject="Confirm", html="<p>x</p>", text="x")
    mail = mime.build(SETTINGS, msg, Recipient("c1", "a@example.net", None, ""))
    assert mail["List-Unsubscribe"] is None and mail["List-Unsubscribe-Post"] is None


def test_long_unsubscribe_url_goes_out_as_plain_ascii_on_the_wire() -> None:
    """A real token URL (no spaces, > 78 characters) must not be RFC 2047-encoded or folded."""
    url = "https://news.example.org/unsubscribe/" + "Ab3_-x." * 20
    msg = Message(kind=ARTICLE, subject="Part 1", html="<p>x</p>", text="x", series="s", part=1)
    values = render.personal_values(name=None, unsubscribe_url=url, preferences_url="https://p")
    wire = mime.to_bytes(
        mime.build(SETTINGS, msg, Recipient("7", "a@example.net", None, url, values))
    )
    assert f"\r\nList-Unsubscribe: <{url}>\r\n".encode() in wire
    assert b"\r\nList-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n" in wire
    assert b"=?utf-8?q?=3C" not in wire
