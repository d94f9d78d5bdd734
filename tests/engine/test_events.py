"""Provider events and the signed webhook: stored once, ledger confirmed, suppression at once."""

from __future__ import annotations

import base64
import datetime as dt
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi.testclient import TestClient
from paths import CONTRACTS
from sqlalchemy import func, select

from newsletter.core.config import Settings, load_settings
from newsletter.engine import events
from newsletter.store.db import session_scope
from newsletter.store.models import (
    ACTIVE,
    BOUNCED,
    COMPLAINED,
    ENROLLED_ACTIVE,
    SENT,
    UNSUBSCRIBED,
    Delivery,
    Enrollment,
    ProviderEvent,
    Series,
    Subscriber,
)
from newsletter.web import webhooks
from newsletter.web.app import create_app

EXAMPLE = CONTRACTS / "sendgrid-event-webhook.example.json"
NOW = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())  # test-only key pair, never stored


def public_b64(key: ec.EllipticCurvePrivateKey) -> str:
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(der).decode()


def signed(key: ec.EllipticCurvePrivateKey, raw: bytes, ts: int | None = None) -> dict[str, str]:
    stamp = str(int(time.time()) if ts is None else ts)
    sig = base64.b64encode(key.sign(stamp.encode() + raw, ec.ECDSA(hashes.SHA256()))).decode()
    return {
        "X-Twilio-Email-Event-Webhook-Signature": sig,
        "X-Twilio-Email-Event-Webhook-Timestamp": stamp,
        "Content-Type": "application/json",
    }


@pytest.fixture
def signed_settings(settings: Settings, key: ec.EllipticCurvePrivateKey) -> Settings:
    return load_settings(
        **{**settings.model_dump(), "sendgrid_webhook_public_key": public_b64(key)}
    )


@pytest.fixture
def client(signed_settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(signed_settings)) as c:
        yield c


def add_subscriber(session: Any, email: str, status: str = ACTIVE) -> Subscriber:
    sub = Subscriber(
        public_id=uuid.uuid4().hex,
        email=email,
        email_key=email.lower(),
        timezone="Europe/London",
        status=status,
    )
    session.add(sub)
    session.flush()
    return sub


def add_series(session: Any) -> Series:
    series = Series(slug=f"s-{uuid.uuid4().hex[:6]}", title="T", send_day=1, send_time="09:00")
    session.add(series)
    session.flush()
    return series


def statuses(settings: Settings) -> dict[str, str]:
    with session_scope(settings.database_url) as session:
        return {s.email_key: s.status for s in session.scalars(select(Subscriber))}


def event_count(settings: Settings) -> int:
    with session_scope(settings.database_url) as session:
        return session.scalar(select(func.count()).select_from(ProviderEvent)) or 0


def example_people(settings: Settings) -> None:
    with session_scope(settings.database_url) as session:
        for email in sorted({e["email"] for e in json.loads(EXAMPLE.read_bytes())}):
            add_subscriber(session, email)


def test_example_batch_signed_is_processed(
    client: TestClient, signed_settings: Settings, key: ec.EllipticCurvePrivateKey
) -> None:
    example_people(signed_settings)
    raw = EXAMPLE.read_bytes()
    response = client.post("/webhooks/sendgrid", content=raw, headers=signed(key, raw))
    assert response.status_code == 200, response.text
    assert response.json() == {
        "ok": True,
        "received": 12,
        "malformed": [],
    }  # no counts of what it did
    assert event_count(signed_settings) == 12
    assert statuses(signed_settings) == {
        "ana.silva@example.org": ACTIVE,  # processed/delivered/open/click
        "b.okafor@example.net": ACTIVE,  # deferred: recorded only
        "no.such.user@example.com": BOUNCED,  # hard bounce
        "c.meyer@example.de": ACTIVE,  # blocked: recorded only
        "left.last.month@example.com": UNSUBSCRIBED,  # dropped: Unsubscribed Address
        "d.tanaka@example.jp": COMPLAINED,  # spamreport
        "e.novak@example.cz": UNSUBSCRIBED,
        "f.haddad@example.org": UNSUBSCRIBED,  # group_unsubscribe wins over a later resubscribe
    }
    with session_scope(signed_settings.database_url) as session:
        types = sorted(session.scalars(select(ProviderEvent.event_type)))
    assert types.count("blocked") == 1 and types.count("bounce") == 1
    assert "complaint" in types and types.count("unsubscribe") == 2


def test_bad_signature_old_timestamp_and_replay_change_nothing(
    client: TestClient, signed_settings: Settings, key: ec.EllipticCurvePrivateKey
) -> None:
    example_people(signed_settings)
    before = statuses(signed_settings)
    raw = EXAMPLE.read_bytes()

    other = ec.generate_private_key(ec.SECP256R1())
    assert (
        client.post("/webhooks/sendgrid", content=raw, headers=signed(other, raw)).status_code
        == 403
    )
    tampered = raw.replace(b'"deferred"', b'"bounce"')
    r = client.post("/webhooks/sendgrid", content=tampered, headers=signed(key, raw))
    assert r.status_code == 403
    stale = int(time.time()) - signed_settings.webhook_tolerance_seconds - 5
    assert (
        client.post("/webhooks/sendgrid", content=raw, headers=signed(key, raw, stale)).status_code
        == 403
    )
    future = int(time.time()) + signed_settings.webhook_tolerance_seconds + 5
    assert (
        client.post("/webhooks/sendgrid", content=raw, headers=signed(key, raw, future)).status_code
        == 403
    )
    assert client.post("/webhooks/sendgrid", content=raw).status_code == 401
    garbage = {**signed(key, raw), "X-Twilio-Email-Event-Webhook-Signature": "not-base64!!"}
    assert client.post("/webhooks/sendgrid", content=raw, headers=garbage).status_code == 403
    assert event_count(signed_settings) == 0 and statuses(signed_settings) == before

    headers = signed(key, raw)
    first = client.post("/webhooks/sendgrid", content=raw, headers=headers)
    after_first = statuses(signed_settings)
    # the very same signed request again (a replay, or SendGrid retrying): nothing changes
    with session_scope(signed_settings.database_url) as session:
        session.execute(
            Subscriber.__table__.update()
            .where(Subscriber.email_key == "e.novak@example.cz")
            .values(status=ACTIVE)  # e.g. they re-subscribed through our own form since
        )
    replay = client.post("/webhooks/sendgrid", content=raw, headers=headers)
    assert first.status_code == replay.status_code == 200
    assert replay.json() == first.json() == {"ok": True, "received": 12, "malformed": []}
    assert event_count(signed_settings) == 12
    assert statuses(signed_settings) == {**after_first, "e.novak@example.cz": ACTIVE}


def test_bounce_suppresses_and_clears_due_times(
    client: TestClient, signed_settings: Settings, key: ec.EllipticCurvePrivateKey
) -> None:
    with session_scope(signed_settings.database_url) as session:
        series = add_series(session)
        sub = add_subscriber(session, "Gone@Example.net")
        other = add_subscriber(session, "stays@example.net")
        for person in (sub, other):
            session.add(
                Enrollment(
                    subscriber_id=person.id,
                    series_id=series.id,
                    position=1,
                    next_part=2,
                    next_due_at=NOW,
                    state=ENROLLED_ACTIVE,
                )
            )
        row = Delivery(
            subscriber_id=sub.id,
            series_id=series.id,
            part_number=1,
            status=SENT,
            scheduled_for=NOW,
            sent_at=NOW,
            provider_message_id="abc123",
        )
        session.add(row)
        session.flush()
        delivery_id, sub_id = row.id, sub.id
    batch = [
        {
            "email": "gone@example.net",
            "timestamp": int(NOW.timestamp()) + 60,
            "event": "bounce",
            "type": "bounce",
            "reason": "550 5.1.1 no such user",
            "status": "5.1.1",
            "sg_event_id": "evt-bounce-1",
            "sg_message_id": "abc123.filter-1",
            "delivery_id": str(delivery_id),
            "series": series.slug,
            "part": "1",
        }
    ]
    raw = json.dumps(batch).encode()
    r = client.post("/webhooks/sendgrid", content=raw, headers=signed(key, raw))
    assert r.status_code == 200 and r.json() == {"ok": True, "received": 1, "malformed": []}
    with session_scope(signed_settings.database_url) as session:
        gone = session.get(Subscriber, sub_id)
        assert gone is not None and gone.status == BOUNCED and gone.unsubscribed_at is not None
        dues = {e.subscriber_id: e.next_due_at for e in session.scalars(select(Enrollment))}
        assert dues[sub_id] is None and dues[other.id] == NOW
        stored = session.scalars(select(ProviderEvent)).one()
        assert (stored.delivery_id, stored.subscriber_id, stored.event_type) == (
            delivery_id,
            sub_id,
            "bounce",
        )


def test_processed_and_delivered_confirm_the_ledger_row(signed_settings: Settings) -> None:
    with session_scope(signed_settings.database_url) as session:
        series = add_series(session)
        sub = add_subscriber(session, "reader@example.net")
        rows = [
            Delivery(
                subscriber_id=sub.id,
                series_id=series.id,
                part_number=n,
                status=SENT,
                scheduled_for=NOW,
                sent_at=NOW,
                provider_message_id="known" if n == 1 else None,
            )
            for n in (1, 2)
        ]
        session.add_all(rows)
        session.flush()
        ids = [r.id for r in rows]
    ts = int(NOW.timestamp())
    batch: list[Any] = []
    for n, row_id in enumerate(ids):
        for kind, offset in (("processed", 1), ("delivered", 5)):
            batch.append(
                {
                    "email": "reader@example.net",
                    "timestamp": ts + offset + n,
                    "event": kind,
                    "sg_event_id": f"{kind}-{row_id}",
                    "sg_message_id": f"msg{row_id}.x",
                    "delivery_id": str(row_id),
                    "series": series.slug,
                    "part": str(n + 1),
                }
            )
    report = events.process_sendgrid(signed_settings, batch, now=NOW)
    assert report.stored == 4 and report.confirmed == 2
    with session_scope(signed_settings.database_url) as session:
        got = {r.id: r for r in session.scalars(select(Delivery))}
        assert got[ids[0]].delivered_at == dt.datetime.fromtimestamp(ts + 5, dt.UTC)
        assert got[ids[1]].delivered_at == dt.datetime.fromtimestamp(ts + 6, dt.UTC)
        assert got[ids[0]].provider_message_id == "known"  # never overwritten
        assert got[ids[1]].provider_message_id == f"msg{ids[1]}"  # the X-Message-Id part
        assert session.get(Subscriber, sub.id).status == ACTIVE  # type: ignore[union-attr]
    # confirmation mail carries a random delivery id and kind=confirmation: no ledger lookup
    other = {
        "email": "x@example.net",
        "timestamp": ts,
        "event": "delivered",
        "sg_event_id": "conf-1",
        "delivery_id": "12",
        "kind": "confirmation",
    }
    assert events.parse_sendgrid(other).delivery_ref is None


def test_malformed_event_is_reported_and_good_ones_stored(
    client: TestClient, signed_settings: Settings, key: ec.EllipticCurvePrivateKey
) -> None:
    with session_scope(signed_settings.database_url) as session:
        add_subscriber(session, "bye@example.net")
    good = {
        "email": "bye@example.net",
        "timestamp": 1764000000,
        "event": "unsubscribe",
        "sg_event_id": "good-1",
    }
    batch = [
        {"email": "a@example.net", "timestamp": 1764000000, "event": "open"},  # no sg_event_id
        good,
        "not an object",
        {"email": "a@example.net", "timestamp": "yesterday", "event": "open", "sg_event_id": "x"},
        {**good, "sg_event_id": "good-2", "event": "account_status_change"},
    ]
    raw = json.dumps(batch).encode()
    r = client.post("/webhooks/sendgrid", content=raw, headers=signed(key, raw))
    assert r.status_code == 200
    body = r.json()
    assert set(body) == {"ok", "received", "malformed"} and body["received"] == 5
    assert event_count(signed_settings) == 2
    assert [m.split(":")[0] for m in body["malformed"]] == ["event 0", "event 2", "event 3"]
    assert "@" not in " ".join(body["malformed"])  # no addresses in the report
    assert statuses(signed_settings)["bye@example.net"] == UNSUBSCRIBED


def test_body_checks(client: TestClient, key: ec.EllipticCurvePrivateKey) -> None:
    raw = b'{"not": "a list"}'
    assert (
        client.post("/webhooks/sendgrid", content=raw, headers=signed(key, raw)).status_code == 400
    )
    raw = b"[not json"
    assert (
        client.post("/webhooks/sendgrid", content=raw, headers=signed(key, raw)).status_code == 400
    )
    huge = b"[" + b" " * (9 * 1024 * 1024) + b"]"
    assert (
        client.post("/webhooks/sendgrid", content=huge, headers=signed(key, huge)).status_code
        == 413
    )


def test_unsigned_posts_refused_without_a_key(settings: Settings) -> None:
    raw = json.dumps(
        [
            {
                "email": "a@example.net",
                "event": "spamreport",
                "timestamp": 1764000000,
                "sg_event_id": "u-1",
            }
        ]
    ).encode()
    with session_scope(settings.database_url) as session:
        add_subscriber(session, "a@example.net")
    with TestClient(create_app(settings)) as c:
        r = c.post("/webhooks/sendgrid", content=raw)
    assert r.status_code == 403
    assert "NEWSLETTER_SENDGRID_WEBHOOK_PUBLIC_KEY" in r.json()["error"]
    assert event_count(settings) == 0 and statuses(settings)["a@example.net"] == ACTIVE


def test_unsigned_posts_accepted_only_when_allowed_explicitly(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    raw = json.dumps(
        [{"email": "a@example.net", "timestamp": 1764000000, "event": "open", "sg_event_id": "u-1"}]
    ).encode()
    allowed = load_settings(**{**settings.model_dump(), "webhook_allow_unsigned": True})
    webhooks._warn_unsigned.cache_clear()
    with TestClient(create_app(allowed)) as c, caplog.at_level("WARNING"):
        first = c.post("/webhooks/sendgrid", content=raw)
        c.post("/webhooks/sendgrid", content=raw)
    assert first.status_code == 200 and first.json() == {"ok": True, "received": 1, "malformed": []}
    assert event_count(allowed) == 1
    assert len([r for r in caplog.records if "unsigned" in r.getMessage()]) == 1  # warned once


def test_webhook_rate_limited_per_ip(
    client: TestClient, key: ec.EllipticCurvePrivateKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(webhooks, "RATE_LIMIT", 3)
    raw = b"[]"
    codes = [
        client.post("/webhooks/sendgrid", content=raw, headers=signed(key, raw)).status_code
        for _ in range(5)
    ]
    assert codes == [200, 200, 200, 429, 429]


def test_thousands_of_events_in_one_request(
    client: TestClient, signed_settings: Settings, key: ec.EllipticCurvePrivateKey
) -> None:
    with session_scope(signed_settings.database_url) as session:
        series = add_series(session)
        subs = [add_subscriber(session, f"r{i}@example.net") for i in range(300)]
        rows = [
            Delivery(
                subscriber_id=s.id,
                series_id=series.id,
                part_number=1,
                status=SENT,
                scheduled_for=NOW,
                sent_at=NOW,
            )
            for s in subs
        ]
        session.add_all(rows)
        session.flush()
        ids = [r.id for r in rows]
    ts = int(NOW.timestamp())
    batch: list[dict[str, Any]] = []
    for i in range(6100):
        row = (i // 4) % 300 if i < 6000 else i - 6000  # then one hard bounce for rows 0..99
        kind = ("processed", "delivered", "open", "click")[i % 4] if i < 6000 else "bounce"
        batch.append(
            {
                "email": f"r{row}@example.net",
                "timestamp": ts + i,
                "event": kind,
                "type": "bounce",
                "sg_event_id": f"bulk-{i}",
                "delivery_id": str(ids[row]),
                "series": series.slug,
                "part": "1",
            }
        )
    raw = json.dumps(batch).encode()
    r = client.post("/webhooks/sendgrid", content=raw, headers=signed(key, raw))
    assert r.status_code == 200
    assert r.json() == {"ok": True, "received": 6100, "malformed": []}
    assert event_count(signed_settings) == 6100
    assert list(statuses(signed_settings).values()).count(BOUNCED) == 100
    with session_scope(signed_settings.database_url) as session:
        assert (
            session.scalar(
                select(func.count()).select_from(Delivery).where(Delivery.delivered_at.is_not(None))
            )
            == 300
        )
