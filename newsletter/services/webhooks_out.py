"""Outgoing webhooks: endpoints she adds in Settings, the signature, and delivery with backoff for 24 hours.

The events themselves are recorded by store.webhooks_out in the transaction that made the
change; the Celery sweep (tasks.webhooks_sweep, every SWEEP_SECONDS) hands each due delivery to
tasks.webhook_deliver, which makes one attempt and sets the next try. No request ever waits on
a receiver.

Each POST carries `Newsletter-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of
"<t>.<body>" under the endpoint's secret>`, `Newsletter-Event` and `Newsletter-Delivery`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

from newsletter.core import sealing
from newsletter.core.config import Settings
from newsletter.store import webhooks_out as outbox
from newsletter.store.db import session_scope

SIGNATURE_HEADER = "Newsletter-Signature"
EVENT_HEADER = "Newsletter-Event"
DELIVERY_HEADER = "Newsletter-Delivery"
EVENTS = outbox.EVENTS
GIVE_UP_AFTER = dt.timedelta(hours=24)
LEASE = dt.timedelta(minutes=5)  # a delivery handed to a worker that never reported is handed again
TIMEOUT_SECONDS = 10.0
# Wait before try n+1 after n failed tries (the last one repeats) until GIVE_UP_AFTER.
BACKOFF = tuple(dt.timedelta(minutes=m) for m in (1, 5, 15, 30, 60, 120, 240, 480))
_LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1"}


class InvalidEndpoint(ValueError):
    """An endpoint that can't be saved; the message is for her."""


@dataclass(frozen=True)
class Attempt:
    """What one POST got: the HTTP status (None when nothing answered) and a short note."""

    status: int | None
    note: str

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


Post = Callable[[str, bytes, dict[str, str]], Attempt]


def check_url(raw: str) -> str:
    """An https address (http only for localhost / 127.0.0.1, for testing)."""
    url = (raw or "").strip()
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if not host or parts.scheme not in ("https", "http"):
        raise InvalidEndpoint("Please give a full address starting with https://")
    if parts.username or parts.password:
        raise InvalidEndpoint("Please leave the user name and password out of the address.")
    if parts.scheme == "http" and host not in _LOCAL_HOSTS:
        raise InvalidEndpoint(
            "The address must start with https:// (plain http only for localhost, for testing)."
        )
    if len(url) > 2000:
        raise InvalidEndpoint("That address is too long.")
    return url


def check_events(chosen: Sequence[str]) -> list[str]:
    events = [e for e in EVENTS if e in set(chosen)]
    if not events:
        raise InvalidEndpoint("Please choose at least one event.")
    return events


def new_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(32)


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The signature header's value for `body` sent at `timestamp`."""
    signed = str(timestamp).encode() + b"." + body
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def add(
    settings: Settings, url: str, events: Sequence[str], include_email: bool
) -> tuple[int, str]:
    """Save an endpoint; (its id, its secret): the secret is shown once, then kept sealed."""
    clean, chosen = check_url(url), check_events(events)
    secret = new_secret()
    with session_scope(settings.database_url) as session:
        endpoint_id = outbox.add_endpoint(
            session, clean, chosen, include_email, sealing.seal(settings.secret, secret)
        )
    return endpoint_id, secret


def remove(settings: Settings, endpoint_id: int) -> bool:
    with session_scope(settings.database_url) as session:
        return outbox.remove_endpoint(session, endpoint_id)


def send_test(settings: Settings, endpoint_id: int, now: dt.datetime) -> bool:
    """Queue a test event for one endpoint (delivered by the next sweep); False if unknown."""
    with session_scope(settings.database_url) as session:
        if outbox.endpoint(session, endpoint_id) is None:
            return False
        outbox.record_test(session, endpoint_id, now)
    return True


@dataclass(frozen=True)
class EndpointView:
    endpoint: outbox.Endpoint
    log: list[outbox.OutgoingDelivery]


def overview(settings: Settings) -> list[EndpointView]:
    """Every endpoint with its recent deliveries (the settings page)."""
    with session_scope(settings.database_url) as session:
        return [EndpointView(e, outbox.log(session, e.id)) for e in outbox.endpoints(session)]


# --- delivery ------------------------------------------------------------------------------


def sweep(settings: Settings, now: dt.datetime, enqueue: Callable[[int], object]) -> int:
    """Hand every due delivery to a worker (`enqueue`), after committing that it was handed."""
    with session_scope(settings.database_url) as session:
        ids = outbox.claim_due(session, now, LEASE)
    for delivery_id in ids:
        enqueue(delivery_id)
    return len(ids)


def next_try(created: dt.datetime, attempts: int, now: dt.datetime) -> dt.datetime | None:
    """When to try again after `attempts` failed tries; None once 24 hours have gone."""
    wait = BACKOFF[min(attempts, len(BACKOFF)) - 1]
    at = now + wait
    return None if at > created + GIVE_UP_AFTER else at


def http_post(url: str, body: bytes, headers: dict[str, str]) -> Attempt:
    try:
        response = httpx.post(
            url, content=body, headers=headers, timeout=TIMEOUT_SECONDS, follow_redirects=False
        )
    except httpx.HTTPError as exc:
        return Attempt(None, type(exc).__name__)
    return Attempt(response.status_code, f"HTTP {response.status_code}")


def deliver(
    settings: Settings, delivery_id: int, now: dt.datetime, post: Post = http_post
) -> str | None:
    """One attempt at one pending delivery, signed at `now`; its status after, None if gone."""
    with session_scope(settings.database_url) as session:
        item = outbox.delivery(session, delivery_id)
        target = None if item is None else outbox.endpoint(session, item.endpoint_id)
    if item is None or target is None or item.status != outbox.PENDING:
        return None if item is None else item.status
    secret = sealing.unseal(settings.secret, target.sealed_secret)
    payload = item.body.encode()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "newsletter-webhooks/1",
        SIGNATURE_HEADER: sign(secret, int(now.timestamp()), payload),
        EVENT_HEADER: item.event,
        DELIVERY_HEADER: str(item.id),
    }
    result = post(target.url, payload, headers)
    later = None if result.ok else next_try(item.created_at, item.attempts + 1, now)
    with session_scope(settings.database_url) as session:
        outbox.attempted(
            session, delivery_id, now, result.note, delivered=result.ok, next_try=later
        )
    if result.ok:
        return outbox.DELIVERED
    return outbox.PENDING if later else outbox.FAILED
