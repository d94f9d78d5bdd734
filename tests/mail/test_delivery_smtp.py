"""SMTP backend against a real aiosmtpd server: MIME, headers, 4xx retried, 5xx failed, STARTTLS + auth."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import pytest
from smtp_server import SmtpServer, self_signed

from newsletter.core.config import Settings, load_settings
from newsletter.mail import render
from newsletter.mail.backends.smtp import SmtpBackend, parse_url
from newsletter.mail.message import (
    ARTICLE,
    Accepted,
    Failed,
    Message,
    Recipient,
    RetryLater,
    Unknown,
)
from newsletter.services import mailing

UNSUB = "https://news.example.org/unsubscribe/tok-abc"


def smtp_settings(url: str) -> Settings:
    # no database needed: SMTP has no halt state
    return load_settings(mail_backend="smtp", smtp_url=url, public_url="https://news.example.org")


def article() -> Message:
    return Message(
        kind=ARTICLE,
        subject="Myth 2: a therapist just listens",
        html=f"<p>{render.GREETING_HTML}</p><p>Ünïcode body</p><a href='{render.UNSUBSCRIBE_URL}'>unsubscribe</a>",
        text=f"{render.GREETING}\n\nÜnïcode body\n\nUnsubscribe: {render.UNSUBSCRIBE_URL}\n",
        series="common-myths",
        part=2,
    )


def person(i: int, name: str | None = "Anna Example") -> Recipient:
    url = f"{UNSUB}{i}"
    return Recipient(
        delivery_id=str(100 + i),
        email=f"anna{i}@example.net",
        name=name,
        unsubscribe_url=url,
        values=render.personal_values(name=name, unsubscribe_url=url, preferences_url="https://p"),
    )


def test_multipart_and_headers_arrive(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NEWSLETTER_SMTP_URL", raising=False)
    with SmtpServer() as server:
        backend = SmtpBackend(smtp_settings(server.url))
        outcomes = backend.send(article(), [person(1), person(2, None), person(3)])
    assert all(isinstance(o, Accepted) for o in outcomes)
    received = server.handler.received
    assert len(received) == 3
    assert len(server.handler.peers) == 1  # one connection for the batch
    got = received[0]
    assert got.rcpt_tos == ["anna1@example.net"] and got.mail_from == backend.settings.from_email
    mail = got.message
    assert mail.get_content_type() == "multipart/alternative"
    parts = [p.get_content_type() for p in mail.iter_parts()]
    assert parts == ["text/plain", "text/html"]
    assert mail["List-Unsubscribe"] == f"<{UNSUB}1>"
    assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert mail["Message-ID"] and mail["Date"]
    assert mail["Subject"] == "Myth 2: a therapist just listens"
    assert mail["To"] == "Anna Example <anna1@example.net>"
    assert mail["Reply-To"] == backend.settings.reply_to
    assert backend.settings.from_email in mail["From"]
    assert outcomes[0].message_id == mail["Message-ID"].strip("<>")  # type: ignore[union-attr]
    text, html = (p.get_content() for p in mail.iter_parts())
    assert "Hi Anna Example," in text and f"{UNSUB}1" in text and "Ünïcode" in text
    assert f"{UNSUB}1" in html and "%%NL_" not in html + text
    assert "Hello," in received[1].message.iter_parts().__next__().get_content()


def test_451_then_250_sends_once() -> None:
    with SmtpServer() as server:
        backend = SmtpBackend(smtp_settings(server.url))
        server.handler.replies.append("451 4.3.0 Mailbox temporarily unavailable")
        [first] = backend.send(article(), [person(1)])
        assert isinstance(first, RetryLater) and "451" in first.reason
        [second] = backend.send(article(), [person(1)])
        assert isinstance(second, Accepted)
    assert len(server.handler.received) == 1


def test_550_fails_with_the_reply_and_the_batch_goes_on() -> None:
    with SmtpServer() as server:
        backend = SmtpBackend(smtp_settings(server.url))
        server.handler.replies.append("550 5.1.1 No such user here")
        outcomes = backend.send(article(), [person(1), person(2)])
    assert isinstance(outcomes[0], Failed)
    assert outcomes[0].reason == "550 5.1.1 No such user here"
    assert isinstance(outcomes[1], Accepted)
    assert [r.rcpt_tos for r in server.handler.received] == [["anna2@example.net"]]


def test_starttls_and_login(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cert, key = self_signed(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # trust the throwaway certificate
    with SmtpServer(tls=(cert, key), login=("mailer", "s3cret pass")) as server:
        url = server.url.replace("s3cret pass", "s3cret%20pass")
        outcomes = SmtpBackend(smtp_settings(url)).send(article(), [person(1)])
        wrong = SmtpBackend(smtp_settings(url.replace("s3cret", "bad"))).send(
            article(), [person(2)]
        )
    assert isinstance(outcomes[0], Accepted)
    assert len(server.handler.received) == 1
    # a refused login is our configuration, not the recipient's fault: retried later, not failed
    assert isinstance(wrong[0], RetryLater) and "535" in wrong[0].reason


def test_server_down_is_retry_later() -> None:
    server = SmtpServer()  # never started
    outcomes = SmtpBackend(smtp_settings(server.url)).send(article(), [person(1), person(2)])
    assert all(isinstance(o, RetryLater) for o in outcomes)


def test_parse_url() -> None:
    srv = parse_url("smtp://us%40er:p%3Ass@mail.example.org:2525")
    assert (srv.host, srv.port, srv.user, srv.password, srv.implicit_tls) == (
        "mail.example.org",
        2525,
        "us@er",
        "p:ss",
        False,
    )
    assert parse_url("smtps://mail.example.org").port == 465


def _drops_after(stage: bytes) -> tuple[str, threading.Thread, list[bytes]]:
    """A minimal SMTP server that closes the connection at `stage`: b"DATA" (after the 354
    go-ahead and the whole message: outcome unknown) or b"RCPT" (before any message)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    received: list[bytes] = []

    def serve() -> None:
        conn, _ = listener.accept()
        with conn, listener:
            reader = conn.makefile("rb")
            conn.sendall(b"220 drop.example ESMTP\r\n")
            while line := reader.readline():
                verb = line.split(b" ", 1)[0].split(b":", 1)[0].strip().upper()
                if verb == stage and stage == b"RCPT":
                    return
                if verb in (b"EHLO", b"HELO"):
                    conn.sendall(b"250 drop.example\r\n")
                elif verb == b"DATA":
                    conn.sendall(b"354 go ahead\r\n")
                    body = b""
                    while not body.endswith(b"\r\n.\r\n"):
                        body += reader.readline()
                    received.append(body)
                    return  # message taken, no reply
                else:
                    conn.sendall(b"250 ok\r\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return f"smtp://127.0.0.1:{listener.getsockname()[1]}", thread, received


def test_connection_lost_after_data_is_unknown_and_the_rest_wait() -> None:
    url, thread, received = _drops_after(b"DATA")
    outcomes = SmtpBackend(smtp_settings(url)).send(article(), [person(1), person(2)])
    thread.join(timeout=10)
    assert len(received) == 1 and b"anna1@example.net" in received[0]
    assert isinstance(outcomes[0], Unknown) and "after DATA" in outcomes[0].reason
    assert isinstance(outcomes[1], RetryLater)


def test_connection_lost_before_data_is_a_plain_retry() -> None:
    url, thread, received = _drops_after(b"RCPT")
    outcomes = SmtpBackend(smtp_settings(url)).send(article(), [person(1), person(2)])
    thread.join(timeout=10)
    assert received == []
    assert all(isinstance(o, RetryLater) for o in outcomes)


def test_addresses_in_replies_are_scrubbed_from_reasons() -> None:
    """Issue 13 #10: a reader's address in an SMTP reply never reaches an outcome's reason."""
    with SmtpServer() as server:
        backend = SmtpBackend(smtp_settings(server.url))
        server.handler.replies.append("550 5.1.1 <anna1@example.net>: no such user")
        server.handler.replies.append("451 4.2.0 anna2@example.net: try again later")
        failed, later = backend.send(article(), [person(1), person(2)])
    assert isinstance(failed, Failed) and failed.reason == "550 5.1.1 <address>: no such user"
    assert isinstance(later, RetryLater) and later.reason == "451 4.2.0 <address>: try again later"


def test_the_logged_refusal_names_no_address(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """What `deliver` logs at WARNING for a refused mail: the reply, without the address."""
    with SmtpServer() as server:
        smtp = settings.model_copy(update={"mail_backend": "smtp", "smtp_url": server.url})
        server.handler.replies.append("550 5.1.1 <anna1@example.net>: no such user")
        with caplog.at_level("WARNING"):
            sent = mailing.deliver(smtp, article(), [person(1)])
    assert sent.failed == 1
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "550 5.1.1 <address>: no such user" in logged
    assert "@example.net" not in logged


def test_probe_connects_and_quits_without_sending() -> None:
    with SmtpServer() as server:
        SmtpBackend(smtp_settings(server.url)).probe()
        assert (
            server.handler.received == []
        )  # connected (the closed port below raises), sent nothing
    with socket.socket() as spare:  # a port nothing listens on
        spare.bind(("127.0.0.1", 0))
        port = spare.getsockname()[1]
    with pytest.raises(OSError):
        SmtpBackend(smtp_settings(f"smtp://127.0.0.1:{port}")).probe()
