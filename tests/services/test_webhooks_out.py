"""Outgoing webhooks against a real local receiver: signature, retries with backoff, never in the request, erasure."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from web_helpers import add_series, client, csrf, outbox
from webhook_receiver import Receiver, receiver

from newsletter import tasks
from newsletter.core.config import Settings
from newsletter.engine import events as provider_events
from newsletter.services import preferences, roster, signup, webhooks_out
from newsletter.store import webhooks_out as store
from newsletter.store.db import session_scope
from newsletter.store.models import Subscriber, WebhookDelivery

T0 = dt.datetime(2026, 12, 7, 9, 0, tzinfo=dt.UTC)
README = Path(__file__).resolve().parents[2] / "README.md"


def readme_verify() -> Any:
    """The README's verification snippet, run as it stands."""
    text = README.read_text()
    match = re.search(r"<!-- webhook-verify -->\n```python\n(.*?)```", text, re.S)
    assert match, "README has no webhook verification snippet"
    scope: dict[str, Any] = {}
    exec(compile(match.group(1), "README.md", "exec"), scope)
    return scope["verify"]


@pytest.fixture
def eager() -> Iterator[None]:
    tasks.app.conf.task_always_eager = True
    try:
        yield
    finally:
        tasks.app.conf.task_always_eager = False


@pytest.fixture
def hook() -> Iterator[Receiver]:
    with receiver() as r:
        yield r


def sweep(at: dt.datetime) -> int:
    return int(tasks.webhooks_sweep(now=at.isoformat()))


def deliveries(settings: Settings) -> list[WebhookDelivery]:
    with session_scope(settings.database_url) as s:
        rows = list(s.scalars(select(WebhookDelivery).order_by(WebhookDelivery.id)))
        s.expunge_all()
        return rows


def sign_up(settings: Settings, email: str = "anna@example.org") -> Subscriber:
    with session_scope(settings.database_url) as s:
        result = signup.subscribe(
            s, email, "Anna", "Europe/London", None, "192.0.2.1", "test", T0,
            secret=settings.secret,
        )  # fmt: skip
        assert result.subscriber is not None
        s.flush()
        s.expunge(result.subscriber)
        return result.subscriber


def test_the_signature_verifies_with_the_readme_snippet(settings, hook, eager) -> None:
    endpoint_id, secret = webhooks_out.add(settings, hook.url, ["subscribed"], False)
    assert webhooks_out.send_test(settings, endpoint_id, T0)
    assert sweep(T0) == 1
    [got] = hook.got
    header = got.headers[webhooks_out.SIGNATURE_HEADER]
    verify = readme_verify()
    assert verify(secret, header, got.body, now=T0.timestamp())
    assert not verify(secret, header, got.body + b" ", now=T0.timestamp())  # body changed
    assert not verify("whsec_other", header, got.body, now=T0.timestamp())  # another secret
    assert not verify(secret, header, got.body, now=T0.timestamp() + 3600)  # replayed later
    payload = json.loads(got.body)
    assert payload["event"] == "test" and got.headers["Newsletter-Event"] == "test"
    assert got.headers["Content-Type"] == "application/json"


def test_a_receiver_failing_three_times_gets_it_again_each_time_then_no_more(
    settings, hook, eager
) -> None:
    webhooks_out.add(settings, hook.url, ["subscribed"], False)
    hook.answers = [500, 500, 500, 200]
    sign_up(settings)
    tries = [T0, T0 + dt.timedelta(minutes=1), T0 + dt.timedelta(minutes=6)]
    for n, at in enumerate(tries, start=1):
        sweep(at)
        assert len(hook.got) == n
        [row] = deliveries(settings)
        assert (row.status, row.attempts, row.last_result) == ("pending", n, "HTTP 500")
        assert row.next_try_at == at + webhooks_out.BACKOFF[n - 1]
        sweep(row.next_try_at - dt.timedelta(seconds=1))  # backoff: not before its time
        assert len(hook.got) == n
    sweep(T0 + dt.timedelta(minutes=21))
    [row] = deliveries(settings)
    assert (row.status, row.attempts, len(hook.got)) == ("delivered", 4, 4)
    sweep(T0 + dt.timedelta(days=2))
    assert len(hook.got) == 4  # delivered: never again
    assert len({g.body for g in hook.got}) == 1  # the same event each time
    assert len({g.headers["Newsletter-Delivery"] for g in hook.got}) == 1


def test_a_receiver_that_never_answers_2xx_is_given_up_after_24_hours(
    settings, hook, eager
) -> None:
    webhooks_out.add(settings, hook.url, ["subscribed"], False)
    hook.answers = [503] * 100
    sign_up(settings)
    at = T0
    for _ in range(30):
        sweep(at)
        [row] = deliveries(settings)
        if row.status != "pending":
            break
        at = row.next_try_at
    assert row.status == "failed"
    assert at <= T0 + webhooks_out.GIVE_UP_AFTER
    tried = len(hook.got)
    assert 8 <= tried == row.attempts
    sweep(T0 + dt.timedelta(days=3))
    assert len(hook.got) == tried


def test_a_signup_is_answered_without_waiting_for_the_delivery(settings, hook) -> None:
    webhooks_out.add(settings, hook.url, ["subscribed"], False)
    hook.hanging = True  # a receiver that never answers
    add_series(settings, "myths", "Common myths", parts=2)
    with client(settings) as c:
        form = {"csrf_token": csrf(c), "email": "anna@example.org", "timezone": "UTC",
                "series": ["myths"]}  # fmt: skip
        assert c.post("/subscribe", data=form).status_code == 200
    assert outbox(settings)  # the confirmation email went
    [row] = deliveries(settings)
    assert (row.event, row.status, row.attempts, row.queued_at) == (
        "subscribed",
        "pending",
        0,
        None,
    )
    assert hook.got == []  # the request path only recorded it; the sweep delivers


def test_an_erased_readers_events_carry_no_address(settings, hook, eager) -> None:
    webhooks_out.add(settings, hook.url, list(webhooks_out.EVENTS), True)
    bea = sign_up(settings, "bea@example.org")  # not erased: her address goes
    anna = sign_up(settings)
    with session_scope(settings.database_url) as s:
        row = s.get(Subscriber, anna.id)
        assert row is not None
        preferences.unsubscribe(s, row, T0)
    assert roster.erase_email(settings, "anna@example.org")
    with session_scope(settings.database_url) as s:  # signing up again records nothing
        again = signup.subscribe(
            s, "anna@example.org", None, "UTC", None, None, "test", T0, secret=settings.secret
        )
    assert again.subscriber is None
    sweep(T0)
    bodies = [json.loads(g.body) for g in hook.got]
    annas = [b for b in bodies if b["reader"]["id"] == anna.public_id]
    assert [b["event"] for b in annas] == ["subscribed", "unsubscribed"]
    assert all("email" not in b["reader"] for b in annas)
    assert not any("anna@example.org" in g.body.decode() for g in hook.got)
    [beas] = [b for b in bodies if b["reader"]["id"] == bea.public_id]
    assert beas["reader"]["email"] == "bea@example.org"


def test_the_address_goes_only_to_an_endpoint_that_includes_addresses(settings, eager) -> None:
    with receiver() as with_email, receiver() as without:
        webhooks_out.add(settings, with_email.url, ["subscribed"], True)
        webhooks_out.add(settings, without.url, ["subscribed", "confirmed"], False)
        anna = sign_up(settings)
        sweep(T0)
        [a] = [json.loads(g.body) for g in with_email.got]
        [b] = [json.loads(g.body) for g in without.got]
    assert a["reader"] == {"id": anna.public_id, "email": "anna@example.org"}
    assert b["reader"] == {"id": anna.public_id}
    assert a["event"] == b["event"] == "subscribed" and a["time"] == "2026-12-07T09:00:00Z"


def test_each_event_is_recorded_where_it_happens(settings) -> None:
    webhooks_out.add(settings, "https://hooks.example.net/in", list(webhooks_out.EVENTS), False)
    add_series(settings, "myths", "Common myths", parts=1)
    anna = sign_up(settings)
    with session_scope(settings.database_url) as s:
        row = s.get(Subscriber, anna.id)
        assert row is not None
        assert signup.confirm(s, row, T0)
        preferences.update_preferences(
            s, row, preferences.Preferences(series_slugs=["myths"], timezone="UTC"), T0
        )
        preferences.unsubscribe(s, row, T0)
    bounce = {"email": "bob@example.org", "timestamp": int(T0.timestamp()), "event": "bounce",
              "sg_event_id": "b-1", "type": "bounce"}  # fmt: skip
    bob = sign_up(settings, "bob@example.org")
    cy = sign_up(settings, "cy@example.org")
    dee = sign_up(settings, "dee@example.org")
    ts = int(T0.timestamp())
    reported = [
        bounce,
        {"email": "cy@example.org", "timestamp": ts, "event": "spamreport", "sg_event_id": "c-1"},
        {"email": "dee@example.org", "timestamp": ts, "event": "unsubscribe", "sg_event_id": "u-1"},
    ]
    provider_events.process_sendgrid(settings, reported, now=T0)
    got = [(d.event, d.reader_id) for d in deliveries(settings)]
    got[7:] = sorted(got[7:])  # one batch: their order is the batch's
    assert got == [
        ("subscribed", anna.public_id),
        ("confirmed", anna.public_id),
        ("preferences_changed", anna.public_id),
        ("unsubscribed", anna.public_id),
        ("subscribed", bob.public_id),
        ("subscribed", cy.public_id),
        ("subscribed", dee.public_id),
        *sorted(
            [
                ("bounced", bob.public_id),
                ("complained", cy.public_id),
                ("unsubscribed", dee.public_id),
            ]
        ),
    ]


def test_events_it_does_not_hear_are_not_recorded(settings) -> None:
    webhooks_out.add(settings, "https://hooks.example.net/in", ["unsubscribed"], False)
    sign_up(settings)
    assert deliveries(settings) == []


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("https://hooks.example.net/in", True),
        ("http://localhost:8025/hook", True),
        ("http://127.0.0.1:9/hook", True),
        ("http://hooks.example.net/in", False),
        ("ftp://hooks.example.net/in", False),
        ("https://user:pw@hooks.example.net/in", False),
        ("hooks.example.net", False),
    ],
)
def test_only_https_addresses_are_taken_except_on_this_machine(url, ok) -> None:
    if ok:
        assert webhooks_out.check_url(url) == url
    else:
        with pytest.raises(webhooks_out.InvalidEndpoint):
            webhooks_out.check_url(url)


def test_the_secret_is_kept_sealed(settings) -> None:
    endpoint_id, secret = webhooks_out.add(
        settings, "https://hooks.example.net/in", ["confirmed"], False
    )
    with session_scope(settings.database_url) as s:
        saved = store.endpoint(s, endpoint_id)
    assert saved is not None and secret not in saved.sealed_secret


def test_a_reader_finishing_a_series_is_an_event(settings) -> None:
    from engine_support import add_person, cli_tick

    webhooks_out.add(settings, "https://hooks.example.net/in", ["series_finished"], False)
    add_series(settings, "short", "A short one", parts=1)
    person = add_person(settings, T0, "UTC", slugs=["short"])
    for days in (8, 15):
        cli_tick(T0 + dt.timedelta(days=days))
    [row] = deliveries(settings)
    assert (row.event, row.subscriber_id) == ("series_finished", person)
    assert json.loads(row.body)["series"] == "short"


def test_a_delivery_handed_to_a_worker_that_never_reported_is_handed_again_after_the_lease(
    settings,
) -> None:
    webhooks_out.add(settings, "https://hooks.example.net/in", ["subscribed"], False)
    sign_up(settings)
    handed: list[int] = []
    assert webhooks_out.sweep(settings, T0, handed.append) == 1  # the worker died with it
    assert webhooks_out.sweep(settings, T0 + webhooks_out.LEASE, handed.append) == 0
    later = T0 + webhooks_out.LEASE + dt.timedelta(seconds=1)
    assert webhooks_out.sweep(settings, later, handed.append) == 1
    assert len(handed) == 2 and len(set(handed)) == 1


def test_erasing_a_reader_leaves_no_address_in_the_delivery_log(settings, hook, eager) -> None:
    webhooks_out.add(settings, hook.url, ["subscribed"], True)
    sign_up(settings)
    sweep(T0)
    assert b"anna@example.org" in hook.got[0].body  # delivered with the address
    assert roster.erase_email(settings, "anna@example.org")
    [row] = deliveries(settings)
    assert row.status == "delivered" and row.subscriber_id is None
    assert "anna@example.org" not in row.body
