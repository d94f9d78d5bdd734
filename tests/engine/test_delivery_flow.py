"""Issue 4 "done when": a tick through SendGrid (the local fake) for 2,500 subscribers, then the webhook."""

from __future__ import annotations

import base64
import datetime as dt
import json
import secrets
import time
from collections.abc import Iterator

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from engine_support import ship, utc
from fastapi.testclient import TestClient
from sendgrid_fake import API_KEY, FakeSendGrid
from sqlalchemy import func, select

from newsletter.core.config import Settings, get_settings, load_settings
from newsletter.engine import schedule
from newsletter.engine.plan import plan as plan_due
from newsletter.engine.reconcile import reconcile
from newsletter.engine.send import send_chunk
from newsletter.engine.tick import tick
from newsletter.queue.dueset import RedisQueue
from newsletter.store.db import session_scope
from newsletter.store.models import (
    ACTIVE,
    BOUNCED,
    CLAIMED,
    ENROLLED_ACTIVE,
    SENT,
    Delivery,
    Enrollment,
    Subscriber,
)
from newsletter.web.app import create_app

NOW = utc(2026, 3, 2, 12)  # a Monday; the shipped series go out on their send day, local time


@pytest.fixture
def key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())  # test-only


@pytest.fixture
def sg(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, key: ec.EllipticCurvePrivateKey
) -> Iterator[tuple[Settings, FakeSendGrid]]:
    """Settings with NEWSLETTER_MAIL_BACKEND=sendgrid pointed at the fake, and a webhook key."""
    public = base64.b64encode(
        key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    ).decode()
    with FakeSendGrid() as fake:
        for name, value in {
            "MAIL_BACKEND": "sendgrid",
            "SENDGRID_HOST": fake.url,
            "SENDGRID_API_KEY": API_KEY,
            "SENDGRID_WEBHOOK_PUBLIC_KEY": public,
        }.items():
            monkeypatch.setenv(f"NEWSLETTER_{name}", value)
        get_settings.cache_clear()
        yield load_settings(), fake
        get_settings.cache_clear()


def people(settings: Settings, n: int, now: dt.datetime) -> list[int]:
    """n confirmed subscribers (one zone) enrolled at `now`, queued in Redis; their ids."""
    with session_scope(settings.database_url) as session:
        subs = []
        for i in range(n):
            email = f"reader{i}.{secrets.token_hex(3)}@example.net"
            sub = Subscriber(
                public_id=secrets.token_hex(8),
                email=email,
                email_key=email,
                name=f"Reader {i}" if i % 2 else None,
                timezone="Europe/London",
                status=ACTIVE,
                consent_method="cli",
                consent_at=now,
                confirmed_at=now,
            )
            subs.append(sub)
        session.add_all(subs)
        session.flush()
        for sub in subs:
            schedule.enroll(session, sub, now)
        ids = [s.id for s in subs]
    with session_scope(settings.database_url) as session:
        RedisQueue(settings).rebuild(session)
    return ids


def next_due(settings: Settings) -> dt.datetime:
    with session_scope(settings.database_url) as session:
        due = session.scalar(
            select(func.min(Enrollment.next_due_at)).where(Enrollment.state == ENROLLED_ACTIVE)
        )
    assert due is not None
    return due


def signed_post(client: TestClient, key: ec.EllipticCurvePrivateKey, events: list[dict]) -> dict:
    raw = json.dumps(events).encode()
    ts = str(int(time.time()))
    sig = base64.b64encode(key.sign(ts.encode() + raw, ec.ECDSA(hashes.SHA256()))).decode()
    response = client.post(
        "/webhooks/sendgrid",
        content=raw,
        headers={
            "X-Twilio-Email-Event-Webhook-Signature": sig,
            "X-Twilio-Email-Event-Webhook-Timestamp": ts,
            "Content-Type": "application/json",
        },
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


@pytest.mark.slow  # a scale test (thousands of rows): `make test`, not `make check`
def test_tick_2500_through_sendgrid_then_a_bounce_turns_one_off(
    sg: tuple[Settings, FakeSendGrid], key: ec.EllipticCurvePrivateKey
) -> None:
    settings, fake = sg
    ship(settings, NOW)
    ids = people(settings, 2500, NOW)
    due = next_due(settings)

    summary = tick(settings, due)
    assert summary.sent == 2500 and summary.failed == 0

    # three schema-valid requests of ≤ 1000, each recipient once
    assert fake.problems == []
    assert sorted(len(r.body["personalizations"]) for r in fake.requests) == [500, 1000, 1000]
    emails = [e for r in fake.requests for e in r.emails]
    assert len(emails) == len(set(emails)) == 2500

    # the provider message id recorded on every one of the 2,500 ledger rows
    request_of = {
        p["custom_args"]["delivery_id"]: r.message_id
        for r in fake.requests
        for p in r.body["personalizations"]
    }
    with session_scope(settings.database_url) as session:
        rows = list(session.scalars(select(Delivery)))
        email_of = dict(session.execute(select(Subscriber.id, Subscriber.email)).all())
    assert len(rows) == 2500 and {d.status for d in rows} == {SENT}
    for d in rows:
        assert d.provider_message_id and d.provider_message_id == request_of[str(d.id)]
    for r in fake.requests:
        for p in r.body["personalizations"]:
            row = next(d for d in rows if str(d.id) == p["custom_args"]["delivery_id"])
            assert p["to"][0]["email"] == email_of[row.subscriber_id]
            assert p["custom_args"]["part"] == "1"
            assert p["headers"]["List-Unsubscribe"].startswith(
                "<https://news.example.org/unsubscribe/"
            )

    # SendGrid reports a hard bounce for one of them
    gone_id = ids[1234]
    gone_row = next(d for d in rows if d.subscriber_id == gone_id)
    with TestClient(create_app(settings)) as client:
        report = signed_post(
            client,
            key,
            [
                {
                    "email": email_of[gone_id],
                    "timestamp": int(due.timestamp()) + 30,
                    "event": "bounce",
                    "type": "bounce",
                    "status": "5.1.1",
                    "reason": "550 5.1.1 user unknown",
                    "sg_event_id": "done-when-bounce",
                    "sg_message_id": f"{gone_row.provider_message_id}.filter0001",
                    "delivery_id": str(gone_row.id),
                    "series": fake.requests[0].body["personalizations"][0]["custom_args"]["series"],
                    "part": "1",
                }
            ],
        )
    assert report == {
        "ok": True,
        "received": 1,
        "malformed": [],
    }  # what it did shows in the database
    with session_scope(settings.database_url) as session:
        assert session.get(Subscriber, gone_id).status == BOUNCED  # type: ignore[union-attr]

    # the next tick (part 2, one cadence later) sends everyone else and nothing to them
    before = len(fake.requests)
    second = tick(settings, next_due(settings))
    assert second.sent == 2499
    later = fake.requests[before:]
    assert fake.problems == []
    assert email_of[gone_id] not in {e for r in later for e in r.emails}
    assert sum(len(r.emails) for r in later) == 2499
    assert {p["custom_args"]["part"] for r in later for p in r.body["personalizations"]} == {"2"}


def test_processed_event_settles_a_row_handed_before_a_crash(
    sg: tuple[Settings, FakeSendGrid], key: ec.EllipticCurvePrivateKey
) -> None:
    settings, fake = sg
    ship(settings, NOW)
    ids = people(settings, 3, NOW)
    due = next_due(settings)
    plan = plan_due(settings, due)
    [chunk] = plan.chunks

    def crash(_ids: list[int]) -> None:
        raise RuntimeError("worker killed after handing the rows over")

    with pytest.raises(RuntimeError):
        send_chunk(settings, chunk, due, before_send=crash)
    with session_scope(settings.database_url) as session:
        rows = list(session.scalars(select(Delivery)))
        assert {(d.status, d.retry_at) for d in rows} == {(CLAIMED, None)}  # outcome unknown

    events = [
        {
            "email": "whoever@example.net",
            "timestamp": int(due.timestamp()) + 5,
            "event": "processed",
            "sg_event_id": f"p-{d.id}",
            "sg_message_id": f"Xmsg{d.id}.recvd-1",
            "delivery_id": str(d.id),
            "part": "1",
        }
        for d in rows
    ]
    with TestClient(create_app(settings)) as client:
        report = signed_post(client, key, events)
    assert report == {"ok": True, "received": len(events), "malformed": []}
    with session_scope(settings.database_url) as session:
        settled = {d.id: d for d in session.scalars(select(Delivery))}
        assert {d.status for d in settled.values()} == {SENT}
        assert {d.provider_message_id for d in settled.values()} == {f"Xmsg{d.id}" for d in rows}
        parts = set(
            session.scalars(select(Enrollment.next_part).where(Enrollment.subscriber_id.in_(ids)))
        )
    assert 2 in parts  # the enrollments moved on: part 1 is never sent again
    assert fake.requests == []
    again = tick(settings, due + dt.timedelta(minutes=5))
    assert again.sent == 0 and fake.requests == []


def test_processed_after_a_timeout_settles_the_unknown_outcome_without_a_resend(
    sg: tuple[Settings, FakeSendGrid],
    key: ec.EllipticCurvePrivateKey,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from newsletter.mail.backends import sendgrid

    settings, fake = sg
    monkeypatch.setattr(sendgrid, "TIMEOUT_SECONDS", 0.5)
    ship(settings, NOW)
    people(settings, 3, NOW)
    due = next_due(settings)
    fake.hang(10)  # SendGrid takes the request but answers too late
    first = tick(settings, due)
    assert first.sent == 0 and len(fake.requests) == 1
    with session_scope(settings.database_url) as session:
        rows = list(session.scalars(select(Delivery)))
    # the request went out whole: the outcome is unknown, so the rows stay handed (never
    # resent blindly) and say why
    assert {(d.status, d.retry_at) for d in rows} == {("claimed", None)}
    assert all(
        (d.last_error or "").startswith("outcome unknown: SendGrid gave no answer") for d in rows
    )
    assert (first.retry, first.failed) == (3, 0)

    # …and then reports that it processed them after all
    events = [
        {
            "email": p["to"][0]["email"],
            "timestamp": int(due.timestamp()) + 20,
            "event": "processed",
            "sg_event_id": f"late-{p['custom_args']['delivery_id']}",
            "sg_message_id": f"LateMsg.{p['custom_args']['delivery_id']}",
            **p["custom_args"],
        }
        for p in fake.requests[0].body["personalizations"]
    ]
    with TestClient(create_app(settings)) as client:
        assert signed_post(client, key, events) == {
            "ok": True,
            "received": len(events),
            "malformed": [],
        }
    with session_scope(settings.database_url) as session:
        assert {(d.status, d.provider_message_id) for d in session.scalars(select(Delivery))} == {
            (SENT, "LateMsg")
        }
    # later ticks and reconcile send nothing twice
    again = tick(settings, due + dt.timedelta(hours=2))
    report = reconcile(settings, due + dt.timedelta(hours=30))
    assert again.sent == 0 and report.resent == 0 and len(fake.requests) == 1


def test_unknown_outcome_without_an_event_is_resent_once_after_the_window(
    sg: tuple[Settings, FakeSendGrid], monkeypatch: pytest.MonkeyPatch
) -> None:
    from newsletter.mail.backends import sendgrid

    settings, fake = sg
    monkeypatch.setattr(sendgrid, "TIMEOUT_SECONDS", 0.5)
    ship(settings, NOW)
    people(settings, 3, NOW)
    due = next_due(settings)
    fake.hang(10)
    assert tick(settings, due).retry == 3
    # within the window: reconcile waits for the provider's event, ticks send nothing
    early = reconcile(settings, due + dt.timedelta(hours=23))
    assert (early.unknown, early.resent) == (3, 0)
    assert tick(settings, due + dt.timedelta(hours=23, minutes=1)).sent == 0
    assert len(fake.requests) == 1
    # past it, with no event: sent once more, saying why
    late = reconcile(settings, due + dt.timedelta(hours=25))
    assert late.resent == 3
    resend = tick(settings, due + dt.timedelta(hours=25, minutes=1))
    assert resend.sent == 3 and len(fake.requests) == 2
    with session_scope(settings.database_url) as session:
        rows = list(session.scalars(select(Delivery)))
    assert {d.status for d in rows} == {SENT}
    assert all(d.attempts == 2 for d in rows)
    # nothing a third time
    assert reconcile(settings, due + dt.timedelta(hours=60)).resent == 0
    assert tick(settings, due + dt.timedelta(hours=60)).sent == 0
    assert len(fake.requests) == 2


def test_refused_key_halts_sending_until_the_key_changes(
    sg: tuple[Settings, FakeSendGrid], monkeypatch: pytest.MonkeyPatch
) -> None:
    """401: the engine records the halt with the refused key's fingerprint; later ticks send
    nothing (no request) while that key is configured; a new key lifts it by itself."""
    from newsletter.core.identity import fingerprint
    from newsletter.store.halt import halted, recorded_halt

    settings, fake = sg
    ship(settings, NOW)
    people(settings, 3, NOW)
    due = next_due(settings)
    monkeypatch.setenv("NEWSLETTER_SENDGRID_API_KEY", "SG.wrong")
    get_settings.cache_clear()
    wrong = load_settings()
    first = tick(wrong, due)
    assert (first.sent, first.retry) == (0, 3)
    assert len(fake.requests) == 1 and fake.requests[0].status == 401
    with session_scope(settings.database_url) as session:
        halt = halted(session, wrong)
        assert halt is not None and "401" in halt.reason and "SG.wrong" not in halt.reason
        assert halt.fingerprint == fingerprint("SG.wrong")
        assert halted(session, settings) is None  # a different key: not halted for it
        assert recorded_halt(session) is not None
    assert tick(wrong, due + dt.timedelta(minutes=5)).due == 0
    assert len(fake.requests) == 1  # refused before any request
    # the operator fixes the key: sending resumes by itself
    again = tick(settings, due + dt.timedelta(minutes=10))
    assert again.sent == 3 and len(fake.requests) == 2
