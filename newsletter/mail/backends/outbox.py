"""Outbox backend (the default): each message one .eml file, exactly the MIME SMTP would send."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

from newsletter.core.config import Settings
from newsletter.mail import mime
from newsletter.mail.message import Accepted, Failed, Message, Outcome, Recipient


def file_name(now: dt.datetime, delivery_id: str) -> str:
    """`20261125T090000.123456Z-<delivery_id>.eml`: sorts by time, no address in it."""
    safe = "".join(c for c in delivery_id if c.isalnum() or c in "-_")[:64] or "m"
    return f"{now.astimezone(dt.UTC):%Y%m%dT%H%M%S.%fZ}-{safe}.eml"


def write_atomic(directory: Path, name: str, data: bytes) -> Path:
    """Write to a temp file in the same folder, fsync, then rename into place (never overwrites)."""
    directory.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        target = directory / name
        stem, n = target.stem, 1
        while True:
            try:
                os.link(tmp, target)  # atomic and fails if the name exists
                break
            except FileExistsError:
                n += 1
                target = directory / f"{stem}-{n}.eml"
            except OSError:  # no hard links on this file system: rename (still atomic)
                os.replace(tmp, target)
                break
        return target
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


class OutboxBackend:
    """Writes one .eml per recipient into settings.outbox_dir."""

    name = "outbox"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.directory = Path(settings.outbox_dir)

    def send(self, message: Message, recipients: Sequence[Recipient]) -> list[Outcome]:
        outcomes: list[Outcome] = []
        for recipient in recipients:
            now = dt.datetime.now(dt.UTC)
            try:
                mail = mime.build(self.settings, message, recipient, now=now)
            except ValueError as exc:
                outcomes.append(Failed(f"invalid message: {exc}"))
                continue
            write_atomic(self.directory, file_name(now, recipient.delivery_id), mime.to_bytes(mail))
            outcomes.append(Accepted(str(mail["Message-ID"]).strip("<>")))
        return outcomes


def make_backend(settings: Settings) -> OutboxBackend:
    return OutboxBackend(settings)
