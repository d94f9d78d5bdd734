"""Outbox backend (the default): each message one .eml file, exactly the MIME SMTP would send."""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import hmac
import os
import re
import tempfile
from collections.abc import Sequence
from email import policy
from email.parser import BytesHeaderParser
from pathlib import Path

from newsletter.core.config import Settings
from newsletter.core.identity import email_key
from newsletter.core.private_files import private_folder
from newsletter.mail import mime
from newsletter.mail.message import Accepted, Failed, Message, Outcome, Recipient


def person_tag(secret: str, email: str) -> str:
    """A short keyed hash of the address (HMAC under the secret key): in a file's name it lets
    erase find that person's files without the name saying whose they are."""
    key = hmac.new(secret.encode("utf-8"), b"newsletter.outbox", hashlib.sha256).digest()
    return hmac.new(key, email_key(email).encode("utf-8"), hashlib.sha256).hexdigest()[:16]


# A name's person tag: `-p` and 16 hex digits before `.eml` (and before a clash's `-2`).
_TAGGED = re.compile(r"-p([0-9a-f]{16})(?:-\d+)?\.eml$")


def file_name(now: dt.datetime, delivery_id: str, tag: str = "") -> str:
    """`20261125T090000.123456Z-<delivery_id>-p<tag>.eml`: sorts by time, no address in it
    (`tag` is `person_tag`). The engine's reconcile finds a row's file by `*Z-<id>.eml` or
    `*Z-<id>-*.eml`, which both forms match."""
    safe = "".join(c for c in delivery_id if c.isalnum() or c in "-_")[:64] or "m"
    suffix = f"-p{tag}" if tag else ""
    return f"{now.astimezone(dt.UTC):%Y%m%dT%H%M%S.%fZ}-{safe}{suffix}.eml"


def _addressed_to(path: Path, key: str) -> bool:
    """True when the file's To header holds this address (for files written without a tag)."""
    try:
        with path.open("rb") as fh:
            headers = BytesHeaderParser(policy=policy.default).parse(fh)
    except OSError:
        return False
    return any(a.addr_spec.lower() == key for a in getattr(headers["To"], "addresses", ()))


def delete_person_files(settings: Settings, email: str) -> int:
    """Delete every .eml in the outbox addressed to this person (erase); how many.

    Found by the keyed tag in the name; a file written before names carried one is opened
    and its To header read."""
    directory = Path(settings.outbox_dir)
    if not directory.is_dir():
        return 0
    tag, key = person_tag(settings.secret, email), email_key(email)
    gone = 0
    for path in directory.glob("*.eml"):
        tagged = _TAGGED.search(path.name)
        if (tagged is not None and tagged.group(1) == tag) or (
            tagged is None and _addressed_to(path, key)
        ):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                gone += 1
    return gone


def write_atomic(directory: Path, name: str, data: bytes) -> Path:
    """Write to a temp file in the same folder, fsync, then rename into place (never overwrites)."""
    private_folder(directory)  # 0700: every file in it holds one reader's email
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
        self.secret = settings.secret  # read once (it may come from a file), not per recipient

    def send(self, message: Message, recipients: Sequence[Recipient]) -> list[Outcome]:
        outcomes: list[Outcome] = []
        if recipients:
            mime.require_practice(self.settings)  # the practice's mistake halts, fails no one
        for recipient in recipients:
            now = dt.datetime.now(dt.UTC)
            try:
                mail = mime.build(self.settings, message, recipient, now=now)
            except ValueError as exc:  # the recipient's address: this reader only
                outcomes.append(Failed(f"invalid message: {exc}"))
                continue
            tag = person_tag(self.secret, recipient.email)
            name = file_name(now, recipient.delivery_id, tag)
            write_atomic(self.directory, name, mime.to_bytes(mail))
            outcomes.append(Accepted(str(mail["Message-ID"]).strip("<>")))
        return outcomes


def make_backend(settings: Settings) -> OutboxBackend:
    return OutboxBackend(settings)
