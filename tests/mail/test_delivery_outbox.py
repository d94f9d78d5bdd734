"""Outbox backend: atomic .eml files, sortable names, and exactly the MIME the SMTP backend sends."""

from __future__ import annotations

import os
import re
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

import pytest
from paths import file_mode
from smtp_server import SmtpServer

from newsletter.core.config import Settings, load_settings
from newsletter.mail import render
from newsletter.mail.backends import get_backend, outbox
from newsletter.mail.backends.smtp import SmtpBackend
from newsletter.mail.message import ARTICLE, Accepted, Failed, Message, Recipient

NAME = re.compile(r"^\d{8}T\d{6}\.\d{6}Z-[A-Za-z0-9_-]+-p[0-9a-f]{16}\.eml$")


def article() -> Message:
    return Message(
        kind=ARTICLE,
        subject="Myth 3: therapy goes on forever",
        html=f"<div style='display:none'>preheader</div><p>{render.GREETING_HTML}</p>"
        f"<p>{'long line ' * 40}é</p><a href='{render.UNSUBSCRIBE_URL}'>unsubscribe</a>",
        text=f"{render.GREETING}\n\n{'long line ' * 40}é\n\n{render.UNSUBSCRIBE_URL}\n",
        series="common-myths",
        part=3,
    )


def person(i: int) -> Recipient:
    url = f"https://news.example.org/unsubscribe/t{i}"
    return Recipient(
        delivery_id=str(i),
        email=f"reader{i}@example.net",
        name=f"Reader {i}",
        unsubscribe_url=url,
        values=render.personal_values(
            name=f"Reader {i}", unsubscribe_url=url, preferences_url="https://p"
        ),
    )


def parse(data: bytes) -> EmailMessage:
    mail = BytesParser(policy=policy.default).parsebytes(data)
    assert isinstance(mail, EmailMessage)
    return mail


def outbox_settings(tmp_path: Path) -> Settings:
    return load_settings(outbox_dir=str(tmp_path / "outbox"), mail_backend="outbox")


def test_files_are_atomic_sortable_and_anonymous(tmp_path: Path) -> None:
    settings = outbox_settings(tmp_path)
    backend = get_backend(settings)
    assert backend.name == "outbox"
    outcomes = backend.send(article(), [person(i) for i in range(1, 6)])
    assert all(isinstance(o, Accepted) for o in outcomes)
    names = os.listdir(settings.outbox_dir)
    assert len(names) == 5  # no temp files left behind
    assert all(NAME.match(n) for n in names), names
    assert not any("@" in n or "reader" in n for n in names)
    # names sort by time == the order they were sent in
    ordered = sorted(names)
    ids = [n.split("Z-", 1)[1].split("-", 1)[0] for n in ordered]
    assert ids == ["1", "2", "3", "4", "5"]
    raw = (settings.outbox_dir / ordered[0]).read_bytes()
    assert b"\r\n" in raw and raw.count(b"\n") == raw.count(b"\r\n")
    assert parse(raw)["To"] == "Reader 1 <reader1@example.net>"


@pytest.mark.usefixtures("umask_022")
def test_the_outbox_folder_is_0700_and_its_files_0600(tmp_path: Path) -> None:
    settings = outbox_settings(tmp_path)
    get_backend(settings).send(article(), [person(1)])
    assert file_mode(settings.outbox_dir) == 0o700  # each file in it holds one reader's email
    assert [file_mode(p) for p in settings.outbox_dir.iterdir()] == [0o600]


def test_write_atomic_never_overwrites(tmp_path: Path) -> None:
    first = outbox.write_atomic(tmp_path, "a.eml", b"one")
    second = outbox.write_atomic(tmp_path, "a.eml", b"two")
    assert first != second and first.read_bytes() == b"one" and second.read_bytes() == b"two"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-2.eml", "a.eml"]


def test_a_crash_mid_write_leaves_no_eml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(KeyboardInterrupt):
        outbox.write_atomic(tmp_path, "b.eml", b"data")
    assert list(tmp_path.iterdir()) == []


def test_bad_address_fails_that_recipient_only(tmp_path: Path) -> None:
    settings = outbox_settings(tmp_path)
    bad = Recipient("9", "x@y.org\r\nBcc: evil@example.com", None, "https://u/9")
    outcomes = get_backend(settings).send(article(), [bad, person(1)])
    assert isinstance(outcomes[0], Failed) and isinstance(outcomes[1], Accepted)
    assert len(os.listdir(settings.outbox_dir)) == 1


def test_eml_is_exactly_what_smtp_sends(tmp_path: Path) -> None:
    settings = outbox_settings(tmp_path)
    [written] = get_backend(settings).send(article(), [person(7)])
    assert isinstance(written, Accepted)
    [path] = list(settings.outbox_dir.iterdir())
    eml = parse(path.read_bytes())

    with SmtpServer() as server:
        smtp = SmtpBackend(load_settings(outbox_dir=str(tmp_path / "outbox"), smtp_url=server.url))
        [sent] = smtp.send(article(), [person(7)])
    assert isinstance(sent, Accepted)
    wire = server.handler.received[0].message

    def shape(mail: EmailMessage) -> list[tuple[str, str]]:
        return [(k, v) for k, v in mail.items() if k not in ("Message-ID", "Date")]

    def boundary_free(mail: EmailMessage) -> list[tuple[str, str]]:
        return [(k, re.sub(r'boundary="[^"]+"', "boundary", v)) for k, v in shape(mail)]

    assert boundary_free(eml) == boundary_free(wire)
    assert eml["Message-ID"] != wire["Message-ID"]
    parts_eml = [(p.get_content_type(), dict(p.items()), p.get_content()) for p in eml.iter_parts()]
    parts_wire = [
        (p.get_content_type(), dict(p.items()), p.get_content()) for p in wire.iter_parts()
    ]
    assert parts_eml == parts_wire
    assert [p[0] for p in parts_eml] == ["text/plain", "text/html"]
    assert "Hi Reader 7," in parts_eml[0][2]
