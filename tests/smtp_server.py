"""A real in-process SMTP server (aiosmtpd) that records what it accepted and can answer 4xx/5xx on request."""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
import ssl
from collections import deque
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


@dataclass
class Received:
    peer: str  # client host:port: one value per connection
    mail_from: str
    rcpt_tos: list[str]
    data: bytes

    @property
    def message(self) -> EmailMessage:
        parsed = BytesParser(policy=policy.default).parsebytes(self.data)
        assert isinstance(parsed, EmailMessage)
        return parsed


class Recorder:
    """aiosmtpd handler: scripted DATA replies (e.g. '451 …', '550 …'), else 250 and record."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.replies: deque[str] = deque()
        self.peers: set[str] = set()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        peer = f"{session.peer[0]}:{session.peer[1]}"
        self.peers.add(peer)
        if self.replies:
            return self.replies.popleft()
        self.received.append(
            Received(
                peer, envelope.mail_from, list(envelope.rcpt_tos), bytes(envelope.original_content)
            )
        )
        return "250 2.0.0 OK queued"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A throwaway certificate for 127.0.0.1/localhost (cert.pem, key.pem)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    # OpenSSL checks the validity against the system clock, not Python's (a test clock may move
    # Python's by months): a window that holds whatever either clock says.
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(dt.datetime(2000, 1, 1, tzinfo=dt.UTC))
        .not_valid_after(dt.datetime(2099, 12, 31, tzinfo=dt.UTC))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


class SmtpServer:
    """`with SmtpServer() as srv:` → srv.url for NEWSLETTER_SMTP_URL; srv.handler.received."""

    def __init__(
        self,
        tls: tuple[Path, Path] | None = None,
        login: tuple[str, str] | None = None,
        handler: Recorder | None = None,
    ) -> None:
        self.handler = handler or Recorder()
        self.port = free_port()
        self.login = login
        kwargs: dict[str, Any] = {}
        if tls is not None:
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.load_cert_chain(str(tls[0]), str(tls[1]))
            kwargs["tls_context"] = ctx
            kwargs["require_starttls"] = True
        if login is not None:
            kwargs["authenticator"] = self._authenticate
            kwargs["auth_required"] = True
            kwargs["auth_require_tls"] = tls is not None
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.port, **kwargs)

    def _authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any
    ) -> AuthResult:
        ok = (
            isinstance(data, LoginPassword)
            and self.login is not None
            and (data.login.decode(), data.password.decode()) == self.login
        )
        return AuthResult(success=ok, handled=False)

    @property
    def url(self) -> str:
        auth = f"{self.login[0]}:{self.login[1]}@" if self.login else ""
        return f"smtp://{auth}127.0.0.1:{self.port}"

    def __enter__(self) -> SmtpServer:
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()


DROP = "DROP"  # a scripted DATA reply: accept and record the message, then close the connection


class DroppingRecorder(Recorder):
    """Recorder whose script may also hold `DROP` (take the message, hang up before replying)
    and `None` (answer 250 as usual): faults at chosen positions of a batch."""

    replies: deque[str | None]  # type: ignore[assignment]

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        reply = self.replies.popleft() if self.replies else None
        if reply is not None and reply != DROP:
            self.peers.add(f"{session.peer[0]}:{session.peer[1]}")
            return reply
        peer = f"{session.peer[0]}:{session.peer[1]}"
        self.peers.add(peer)
        self.received.append(
            Received(
                peer, envelope.mail_from, list(envelope.rcpt_tos), bytes(envelope.original_content)
            )
        )
        if reply == DROP:
            server.transport.close()  # the client never reads the 250
        return "250 2.0.0 OK queued"
