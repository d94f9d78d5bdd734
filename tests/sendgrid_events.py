"""The stand-in's Event Webhook: signed `processed` events for the requests it accepted, in batches.

`EventPoster(fake, post)` signs with a test key pair (`public_key` is what the app holds) and
hands each batch to `post(raw, headers) -> status` (a TestClient, or HTTP to a running app).
`flush()` posts the events of every accepted request not posted yet (`hold(i)` keeps request i's
back until `unhold(i)`), `batch` events a post; `start(delay)` does it from a thread every
`delay` seconds, as SendGrid posts a few seconds after it processed the mail.
"""

from __future__ import annotations

import base64
import contextlib
import json
import threading
import time
from collections.abc import Callable
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sendgrid_fake import FakeSendGrid

SIGNATURE = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP = "X-Twilio-Email-Event-Webhook-Timestamp"
Post = Callable[[bytes, dict[str, str]], int]


def public_key_of(key: ec.EllipticCurvePrivateKey) -> str:
    """The verification key as SendGrid shows it (base64 DER): NEWSLETTER_SENDGRID_WEBHOOK_PUBLIC_KEY."""
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(der).decode()


def signed(
    key: ec.EllipticCurvePrivateKey, events: list[dict[str, Any]]
) -> tuple[bytes, dict[str, str]]:
    """The body and headers of one signed post."""
    raw = json.dumps(events).encode()
    stamp = str(int(time.time()))
    sig = base64.b64encode(key.sign(stamp.encode() + raw, ec.ECDSA(hashes.SHA256()))).decode()
    return raw, {SIGNATURE: sig, TIMESTAMP: stamp, "Content-Type": "application/json"}


def processed_events(fake: FakeSendGrid, index: int) -> list[dict[str, Any]]:
    """A `processed` event for each recipient of the fake's request `index`."""
    request = fake.requests[index]
    return [
        {
            "email": p["to"][0]["email"],
            "timestamp": int(time.time()),
            "event": "processed",
            "sg_event_id": f"processed-{request.message_id}-{n}",
            "sg_message_id": f"{request.message_id}.filter{n}",
            **p.get("custom_args", {}),
        }
        for n, p in enumerate(request.personalizations)
    ]


class EventPoster:
    """Posts the stand-in's events to the app, signed; `answers` keeps every status it got."""

    def __init__(
        self, fake: FakeSendGrid, post: Post, key: ec.EllipticCurvePrivateKey | None = None
    ) -> None:
        self.fake, self.post = fake, post
        self.key = key or ec.generate_private_key(ec.SECP256R1())  # test-only
        self.public_key = public_key_of(self.key)
        self.batch = 1000
        self.posted: set[int] = set()  # request indexes whose events went out with a 2xx
        self.held: set[int] = set()
        self.answers: list[int] = []
        self.refused: list[tuple[bytes, set[int]]] = []  # bodies to post again, their requests
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.thread: threading.Thread | None = None

    def hold(self, index: int) -> None:
        self.held.add(index)

    def unhold(self, index: int) -> None:
        self.held.discard(index)

    def flush(self) -> int:
        """Post every accepted request's events not posted yet (batches; a refused batch is
        posted again next time with the same body, as SendGrid retries). How many events went
        out."""
        with self.lock:
            retries, self.refused = self.refused, []
            waiting = {i for _, indexes in retries for i in indexes}
            due = [
                i
                for i, r in enumerate(list(self.fake.requests))
                if r.status in (200, 202)
                and i not in self.posted
                and i not in self.held
                and i not in waiting
            ]
            events = [(i, e) for i in due for e in processed_events(self.fake, i)]
            batches = retries + [
                (json.dumps([e for _, e in part]).encode(), {i for i, _ in part})
                for part in (
                    events[start : start + self.batch]
                    for start in range(0, len(events), self.batch)
                )
            ]
            sent = 0
            for raw, indexes in batches:
                status = self.post(raw, self.headers(raw))
                self.answers.append(status)
                if 200 <= status < 300:
                    sent += len(json.loads(raw))
                    self.posted.update(indexes)
                else:
                    self.refused.append((raw, indexes))
            self.posted.difference_update(i for _, indexes in self.refused for i in indexes)
            return sent

    def headers(self, raw: bytes) -> dict[str, str]:
        """Signature headers for a body (a retry is signed anew, its body unchanged)."""
        stamp = str(int(time.time()))
        sig = self.key.sign(stamp.encode() + raw, ec.ECDSA(hashes.SHA256()))
        return {
            SIGNATURE: base64.b64encode(sig).decode(),
            TIMESTAMP: stamp,
            "Content-Type": "application/json",
        }

    def start(self, delay: float = 3.0) -> EventPoster:
        def run() -> None:
            while not self.stopping.wait(delay):
                with contextlib.suppress(Exception):  # the app restarts: posted next round
                    self.flush()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        if self.thread is not None:
            self.thread.join(10)
