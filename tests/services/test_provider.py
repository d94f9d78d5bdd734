"""Connecting the mail provider: SendGrid against the stand-in (scopes, signed webhook, key kept), SMTP, disconnecting."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sendgrid_fake import API_KEY, FakeSendGrid
from smtp_server import SmtpServer

from newsletter.core.config import Settings, get_settings, load_settings
from newsletter.services import provider
from newsletter.store.practice import effective_settings
from newsletter.web import webhooks
from newsletter.web.app import create_app

HOOKS = "/v3/user/webhooks/event/settings"


@pytest.fixture
def fake(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Settings, FakeSendGrid]]:
    """The stand-in SendGrid as the only SendGrid setting the server has (its address):
    nothing in the environment fixes the backend, so the Settings page may connect."""
    with FakeSendGrid() as sg:
        monkeypatch.setenv("NEWSLETTER_SENDGRID_HOST", sg.url)
        get_settings.cache_clear()
        yield load_settings(), sg
        get_settings.cache_clear()


def _calls(sg: FakeSendGrid) -> list[tuple[str, str, int]]:
    return [(c.method, c.path, c.status) for c in sg.api_calls]


def test_connecting_checks_the_scopes_sets_up_a_signed_webhook_and_sends_with_the_key(
    fake: tuple[Settings, FakeSendGrid],
) -> None:
    settings, sg = fake
    assert effective_settings(settings).mail_backend == "outbox"
    done = provider.connect_sendgrid(settings, f"  {API_KEY}\n")
    assert done.name == "SendGrid"
    [hook_id] = sg.webhooks
    assert _calls(sg) == [
        ("GET", "/v3/scopes", 200),
        ("GET", f"{HOOKS}/all", 200),
        ("POST", HOOKS, 201),
        ("PATCH", f"{HOOKS}/signed/{hook_id}", 200),
    ]
    assert not [p for c in sg.api_calls for p in c.problems]  # every body as documented
    hook = sg.webhooks[hook_id]
    assert hook["url"] == "https://news.example.org/webhooks/sendgrid" and hook["signed"]
    assert hook["enabled"] and hook["bounce"] and hook["spam_report"] and hook["unsubscribe"]
    made = effective_settings(settings)
    assert made.mail_backend == "sendgrid"
    assert made.sendgrid_api_key is not None and made.sendgrid_api_key.get_secret_value() == API_KEY
    assert made.sendgrid_webhook_public_key == sg.public_key
    status = provider.status(made)
    assert (status.label, status.signed, status.webhook_id) == ("SendGrid", True, hook_id)

    result = provider.send_test(made, "maya@riverside.example.net")
    assert result.ok, result.detail
    [sent] = sg.accepted
    assert sent.emails == ["maya@riverside.example.net"] and not sg.problems
    assert sent.body["subject"].startswith("[Test] ")


def test_connecting_again_updates_the_same_webhook(fake: tuple[Settings, FakeSendGrid]) -> None:
    settings, sg = fake
    provider.connect_sendgrid(settings, API_KEY)
    provider.connect_sendgrid(effective_settings(settings), API_KEY)
    [hook_id] = sg.webhooks  # SendGrid allows one webhook a URL: ours is updated, not doubled
    assert ("PATCH", f"{HOOKS}/{hook_id}", 200) in _calls(sg)


def test_a_key_without_the_webhook_permissions_is_refused_and_nothing_is_kept(
    fake: tuple[Settings, FakeSendGrid],
) -> None:
    settings, sg = fake
    sg.scopes = ["mail.send"]
    with pytest.raises(provider.NotConnected, match="Event Webhook") as refused:
        provider.connect_sendgrid(settings, API_KEY)
    assert "Mail Send" not in str(refused.value)
    assert not sg.webhooks and effective_settings(settings).mail_backend == "outbox"


@pytest.mark.parametrize("key", ["SG.not-the-right-key", "", "SG.two words"])
def test_a_wrong_or_malformed_key_is_refused_in_plain_words(
    fake: tuple[Settings, FakeSendGrid], key: str
) -> None:
    settings, sg = fake
    with pytest.raises(provider.NotConnected):
        provider.connect_sendgrid(settings, key)
    assert effective_settings(settings).mail_backend == "outbox" and not sg.webhooks


def test_an_unreachable_sendgrid_is_said_so(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NEWSLETTER_SENDGRID_HOST", "http://127.0.0.1:1")
    with pytest.raises(provider.NotConnected, match="Could not reach SendGrid"):
        provider.connect_sendgrid(load_settings(), API_KEY)


def test_the_environment_wins_and_the_page_cannot_change_it(
    fake: tuple[Settings, FakeSendGrid], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, sg = fake
    monkeypatch.setenv("NEWSLETTER_MAIL_BACKEND", "outbox")
    settings = load_settings()
    with pytest.raises(provider.NotConnected, match="NEWSLETTER_MAIL_BACKEND"):
        provider.connect_sendgrid(settings, API_KEY)
    assert not sg.api_calls
    assert provider.status(effective_settings(settings)).fixed == ("NEWSLETTER_MAIL_BACKEND",)


def test_disconnecting_returns_to_test_mode(fake: tuple[Settings, FakeSendGrid]) -> None:
    settings, _ = fake
    provider.connect_sendgrid(settings, API_KEY)
    provider.disconnect(effective_settings(settings))
    made = effective_settings(settings)
    assert made.mail_backend == "outbox" and made.sendgrid_api_key is None
    assert provider.status(made).label == "Not sent yet — test mode"


def test_a_signed_event_from_the_stand_in_is_accepted_and_an_unsigned_one_refused(
    fake: tuple[Settings, FakeSendGrid],
) -> None:
    settings, sg = fake
    provider.connect_sendgrid(settings, API_KEY)
    with TestClient(create_app(settings), base_url="https://news.example.org") as site:

        def post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
            answer = site.post(url, content=body, headers=headers)
            return answer.status_code, answer.content

        event = {"email": "reader@example.net", "timestamp": 1, "event": "processed",
                 "sg_event_id": "e1", "sg_message_id": "m1.filter"}  # fmt: skip
        signed = sg.post_events([event], post=post)
        assert signed.url == "https://news.example.org/webhooks/sendgrid"
        assert signed.status == 200, signed.body
        assert sg.post_events([event], post=post, signed=False).status == 401
        assert sg.post_events([event], post=post, timestamp=1).status == 403  # stale


def test_the_webhook_path_is_the_routes() -> None:
    assert provider.WEBHOOK_PATH == webhooks.PATH


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")  # a local server
def test_smtp_is_checked_by_signing_in_and_kept(settings: Settings) -> None:
    with SmtpServer(login=("mailer", "s3cret: p@ss/word")) as server:
        with pytest.raises(provider.NotConnected, match="refused the user name or password"):
            provider.connect_smtp(
                settings, "127.0.0.1", str(server.port), "starttls", "mailer", "no"
            )
        assert effective_settings(settings).mail_backend == "outbox"
        provider.connect_smtp(
            settings, "127.0.0.1", str(server.port), "starttls", "mailer", "s3cret: p@ss/word"
        )
        made = effective_settings(settings)
        assert made.mail_backend == "smtp"
        assert provider.status(made).smtp_host == "127.0.0.1"
        assert provider.send_test(made, "maya@riverside.example.net").ok
        [got] = server.handler.received
        assert got.rcpt_tos == ["maya@riverside.example.net"]


@pytest.mark.parametrize(
    ("host", "port", "security"),
    [("", "587", "starttls"), ("smtp.example.net/x", "587", "starttls"),
     ("smtp.example.net", "0", "starttls"), ("smtp.example.net", "x", "tls"),
     ("smtp.example.net", "587", "plain")],
)  # fmt: skip
def test_smtp_fields_are_checked_before_connecting(host: str, port: str, security: str) -> None:
    with pytest.raises(provider.NotConnected):
        provider.smtp_url(host, port, security, "", "")
