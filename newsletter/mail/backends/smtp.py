"""SMTP backend: one connection per batch, STARTTLS when offered, 4xx retried later, 5xx failed."""

from __future__ import annotations

import contextlib
import datetime as dt
import random
import re
import smtplib
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from newsletter.core.config import Settings
from newsletter.mail import mime
from newsletter.mail.message import (
    Accepted,
    Failed,
    Message,
    Outcome,
    Recipient,
    RetryLater,
    Unknown,
    scrub,
)

TIMEOUT_SECONDS = 30.0
RETRY_AFTER = dt.timedelta(minutes=5)


@dataclass(frozen=True)
class Server:
    host: str
    port: int
    user: str | None
    password: str | None
    implicit_tls: bool


def parse_url(url: str) -> Server:
    """`smtp://user:pass@host:port` (STARTTLS when offered) or `smtps://…` (TLS from the start)."""
    parts = urlsplit(url)
    implicit = parts.scheme == "smtps"
    return Server(
        host=parts.hostname or "localhost",
        port=parts.port or (465 if implicit else 25),
        user=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
        implicit_tls=implicit,
    )


def _text(reply: bytes | str) -> str:
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else reply
    return scrub(text.strip())


def _later(reason: str) -> RetryLater:
    jitter = dt.timedelta(seconds=random.uniform(0, 30))
    at = dt.datetime.now(dt.UTC) + RETRY_AFTER + jitter
    return RetryLater(at=at, reason=scrub(reason)[:1000])


def _classify(code: int, reply: bytes | str) -> Outcome:
    text = f"{code} {_text(reply)}"
    return _later(text) if 400 <= code < 500 else Failed(text[:1000])


class _BeforeBody(Exception):
    """The connection failed before the message body was sent (DATA not accepted yet)."""


def _envelope(conn: smtplib.SMTP, sender: str, to: str) -> None:
    """MAIL FROM + RCPT TO; SMTPResponseException with the server's reply when refused."""
    code, reply = conn.mail(sender)
    if code != 250:
        _reset(conn)
        raise smtplib.SMTPSenderRefused(code, reply, sender)
    code, reply = conn.rcpt(to)
    if code not in (250, 251):
        _reset(conn)
        raise smtplib.SMTPResponseException(code, reply)


def _data(conn: smtplib.SMTP, body: bytes) -> tuple[int, bytes]:
    """DATA in two steps, so a lost connection tells whether the message had gone out: before
    the 354 go-ahead it had not (_BeforeBody); after it, the outcome is unknown. Returns the
    final reply. (smtplib's sendmail hides the difference.)"""
    try:
        code, reply = conn.docmd("data")
    except (OSError, smtplib.SMTPException) as exc:
        raise _BeforeBody() from exc
    if code != 354:
        _reset(conn)
        return code, reply
    body = re.sub(rb"\r\n|\r|\n", b"\r\n", body)
    body = re.sub(rb"(?m)^\.", b"..", body)  # dot-stuffing (RFC 5321 4.5.2)
    if not body.endswith(b"\r\n"):
        body += b"\r\n"
    conn.send(body + b".\r\n")
    return conn.getreply()


def _reset(conn: smtplib.SMTP) -> None:
    with contextlib.suppress(OSError, smtplib.SMTPException):
        conn.rset()


class SmtpBackend:
    """Sends each recipient their own message over one SMTP session per batch."""

    name = "smtp"

    def __init__(self, settings: Settings) -> None:
        if not settings.smtp_url:
            raise ValueError("NEWSLETTER_SMTP_URL is not set (smtp://user:pass@host:port)")
        self.settings = settings
        self.server = parse_url(settings.smtp_url)

    def _connect(self) -> smtplib.SMTP:
        srv = self.server
        context = ssl.create_default_context()
        conn: smtplib.SMTP
        if srv.implicit_tls:
            conn = smtplib.SMTP_SSL(srv.host, srv.port, timeout=TIMEOUT_SECONDS, context=context)
        else:
            conn = smtplib.SMTP(srv.host, srv.port, timeout=TIMEOUT_SECONDS)
        try:
            conn.ehlo()
            if not srv.implicit_tls and conn.has_extn("starttls"):
                conn.starttls(context=context)
                conn.ehlo()
            if srv.user is not None:
                conn.login(srv.user, srv.password or "")
        except BaseException:
            conn.close()
            raise
        return conn

    def probe(self) -> None:
        """Connect as a send would (EHLO, STARTTLS when offered, AUTH when a user is given),
        then QUIT; raises what connecting raised (`newsletter doctor` turns it into advice)."""
        conn = self._connect()
        try:
            conn.quit()
        except (OSError, smtplib.SMTPException):
            conn.close()

    def send(self, message: Message, recipients: Sequence[Recipient]) -> list[Outcome]:
        outcomes: list[Outcome] = []
        if not recipients:
            return outcomes
        mime.require_practice(self.settings)  # the practice's mistake halts, fails no one
        try:
            conn = self._connect()
        except smtplib.SMTPResponseException as exc:
            # a refused greeting or login is our configuration, not the recipient: keep the mail
            reason = f"SMTP session refused: {exc.smtp_code} {_text(exc.smtp_error)}"
            return [_later(reason)] * len(recipients)
        except (OSError, smtplib.SMTPException) as exc:
            return [_later(f"SMTP connection failed: {type(exc).__name__}: {exc}")] * len(
                recipients
            )
        try:
            for index, recipient in enumerate(recipients):
                try:
                    mail = mime.build(self.settings, message, recipient)
                except ValueError as exc:  # the recipient's address: this reader only
                    outcomes.append(Failed(scrub(f"invalid message: {exc}")[:1000]))
                    continue
                try:
                    _envelope(conn, self.settings.from_email, recipient.email)
                except smtplib.SMTPResponseException as exc:  # sender or recipient refused
                    outcomes.append(_classify(exc.smtp_code, exc.smtp_error))
                    continue
                except (OSError, smtplib.SMTPException) as exc:  # connection lost: the rest later
                    reason = f"SMTP connection lost: {type(exc).__name__}: {exc}"
                    outcomes.extend([_later(reason)] * (len(recipients) - index))
                    break
                try:
                    code, reply = _data(conn, mime.to_bytes(mail))
                except _BeforeBody as exc:  # the server never took the message
                    cause = exc.__cause__ or exc
                    reason = f"SMTP connection lost: {type(cause).__name__}: {cause}"
                    outcomes.extend([_later(reason)] * (len(recipients) - index))
                    break
                except (OSError, smtplib.SMTPException) as exc:
                    # the message went out after DATA and no reply came: the server may have
                    # queued it. Never resent blindly; reconcile settles it.
                    reason = f"SMTP gave no answer after DATA: {type(exc).__name__}: {exc}"
                    outcomes.append(Unknown(scrub(reason)[:1000]))
                    outcomes.extend(
                        [_later("not attempted: the connection was lost")]
                        * (len(recipients) - index - 1)
                    )
                    break
                if code == 250:
                    outcomes.append(Accepted(str(mail["Message-ID"]).strip("<>")))
                else:
                    outcomes.append(_classify(code, reply))
                    _reset(conn)
        finally:
            try:
                conn.quit()
            except (OSError, smtplib.SMTPException):
                conn.close()
        return outcomes


def make_backend(settings: Settings) -> SmtpBackend:
    return SmtpBackend(settings)
