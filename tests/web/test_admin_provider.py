"""Settings > Mail in the admin: connect SendGrid (stand-in), send a test, disconnect; the environment wins."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import web_helpers
from fastapi.testclient import TestClient
from sendgrid_fake import API_KEY, FakeSendGrid

from newsletter.core.config import Settings, get_settings, load_settings

PAGE = "/admin/settings/mail"


@pytest.fixture
def site(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[TestClient, FakeSendGrid]]:
    """The admin, signed in, with the stand-in SendGrid as the only SendGrid setting."""
    with FakeSendGrid() as sg:
        monkeypatch.setenv("NEWSLETTER_SENDGRID_HOST", sg.url)
        get_settings.cache_clear()
        with web_helpers.admin_app_client(web_helpers.as_admin(load_settings())) as c:
            web_helpers.sign_in(c)
            yield c, sg
        get_settings.cache_clear()


def _post(c: TestClient, path: str, **data: str) -> object:
    token = web_helpers.csrf(c, PAGE)
    return c.post(PAGE + path, data={"csrf_token": token, **data})


def test_connect_test_and_disconnect_from_the_page(site: tuple[TestClient, FakeSendGrid]) -> None:
    c, sg = site
    page = c.get(PAGE)
    assert page.status_code == 200 and "Not sent yet — test mode" in page.text
    assert "Mail Send" in page.text and "Disconnect" not in page.text

    answer = _post(c, "/sendgrid", api_key=API_KEY)
    assert answer.status_code == 303  # type: ignore[attr-defined]
    page = c.get(PAGE)
    assert "SendGrid is connected" in page.text and "<strong>SendGrid</strong>" in page.text
    assert "https://news.example.org/webhooks/sendgrid" in page.text
    assert API_KEY not in page.text  # the key is never shown again

    assert _post(c, "/test", to="maya@riverside.example.net").status_code == 303  # type: ignore[attr-defined]
    assert "Test sent" in c.get(PAGE).text
    assert [r.emails for r in sg.accepted] == [["maya@riverside.example.net"]]

    assert _post(c, "/disconnect").status_code == 303  # type: ignore[attr-defined]
    page = c.get(PAGE)
    assert "Disconnected" in page.text and "<strong>Not sent yet — test mode</strong>" in page.text


def test_a_refused_key_is_said_at_the_form(site: tuple[TestClient, FakeSendGrid]) -> None:
    c, sg = site
    sg.scopes = ["mail.send", "user.webhooks.event.settings.read"]
    answer = _post(c, "/sendgrid", api_key=API_KEY)
    assert answer.status_code == 422  # type: ignore[attr-defined]
    text = answer.text  # type: ignore[attr-defined]
    assert "lacks permissions: Mail Settings &gt; Event Webhook (update)" in text
    assert 'aria-invalid="true"' in text


def test_the_smtp_password_is_not_echoed_after_a_refusal(
    site: tuple[TestClient, FakeSendGrid],
) -> None:
    c, _ = site
    answer = _post(c, "/smtp", host="127.0.0.1", port="1", security="starttls", user="mailer",
                   password="the-typed-password")  # fmt: skip
    assert answer.status_code == 422  # type: ignore[attr-defined]
    text = answer.text  # type: ignore[attr-defined]
    assert "Could not connect to 127.0.0.1:1" in text and "the-typed-password" not in text


def test_with_the_backend_set_on_the_server_the_page_names_the_variable_and_refuses(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NEWSLETTER_MAIL_BACKEND", "outbox")
    get_settings.cache_clear()
    with web_helpers.admin_app_client(web_helpers.as_admin(load_settings())) as c:
        web_helpers.sign_in(c)
        page = c.get(PAGE).text
        assert "fixed by the server" in page and "<code>NEWSLETTER_MAIL_BACKEND</code>" in page
        assert 'action="/admin/settings/mail/sendgrid"' not in page
        answer = _post(c, "/sendgrid", api_key=API_KEY)
        assert answer.status_code == 422  # type: ignore[attr-defined]
        assert "The server sets NEWSLETTER_MAIL_BACKEND" in answer.text  # type: ignore[attr-defined]


def test_the_page_is_for_the_signed_in_only(settings: Settings) -> None:
    with web_helpers.admin_app_client(web_helpers.as_admin(settings)) as c:
        assert c.get(PAGE).status_code == 303
        token = web_helpers.csrf(c, "/admin/login")
        assert c.post(PAGE + "/disconnect", data={"csrf_token": token}).status_code == 303
