"""The SendGrid stand-in's account API and event posting keep to SendGrid's documented shapes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sendgrid.helpers.eventwebhook import EventWebhook
from sendgrid_fake import API_KEY, SIGNATURE_HEADER, TIMESTAMP_HEADER, FakeSendGrid

HOOKS = "/v3/user/webhooks/event/settings"
AUTH = {"Authorization": f"Bearer {API_KEY}"}


@pytest.fixture
def sg() -> Iterator[tuple[FakeSendGrid, httpx.Client]]:
    with FakeSendGrid() as fake, httpx.Client(base_url=fake.url, headers=AUTH) as client:
        yield fake, client


def test_scopes_need_the_key(sg: tuple[FakeSendGrid, httpx.Client]) -> None:
    fake, client = sg
    assert client.get("/v3/scopes").json() == {"scopes": fake.scopes}
    assert client.get("/v3/scopes", headers={"Authorization": "Bearer SG.other"}).status_code == 401


@pytest.mark.parametrize(
    "body",
    [
        {"enabled": True},  # url is required
        {"url": "https://a.example/h", "bounces": True},  # a misspelt event is not ignored
        {"url": "https://a.example/h", "bounce": "true"},  # booleans are JSON booleans
    ],
)
def test_a_webhook_body_off_the_documented_shape_is_refused(
    sg: tuple[FakeSendGrid, httpx.Client], body: dict[str, Any]
) -> None:
    fake, client = sg
    answer = client.post(HOOKS, json=body)
    assert answer.status_code == 400 and answer.json()["errors"]
    assert fake.api_calls[-1].problems and not fake.webhooks


def test_create_sign_and_read_the_public_key(sg: tuple[FakeSendGrid, httpx.Client]) -> None:
    fake, client = sg
    made = client.post(HOOKS, json={"url": "https://a.example/h", "enabled": True, "bounce": True})
    assert made.status_code == 201
    hook_id = made.json()["id"]
    assert client.post(HOOKS, json={"url": "https://a.example/h"}).status_code == 400  # one a URL
    assert client.patch(f"{HOOKS}/signed/{hook_id}", json={"enabled": "yes"}).status_code == 400
    signed = client.patch(f"{HOOKS}/signed/{hook_id}", json={"enabled": True}).json()
    assert signed == {"id": hook_id, "public_key": fake.public_key}
    assert client.get(f"{HOOKS}/signed/{hook_id}").json()["public_key"] == fake.public_key
    listed = client.get(f"{HOOKS}/all").json()
    assert listed["webhooks"][0]["public_key"] == fake.public_key
    assert client.patch(f"{HOOKS}/nope", json={"url": "https://b.example"}).status_code == 404
    assert fake.webhook_url == "https://a.example/h"


def _catching() -> tuple[list[tuple[str, bytes, dict[str, str]]], Any]:
    got: list[tuple[str, bytes, dict[str, str]]] = []

    def post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        got.append((url, body, headers))
        return 200, b"{}"

    return got, post


def test_posted_events_are_signed_as_sendgrid_signs_them() -> None:
    fake = FakeSendGrid()
    try:
        got, post = _catching()
        fake.post_events([{"event": "delivered"}], url="https://a.example/h", post=post)
        fake.post_events(
            [{"event": "delivered"}], url="https://a.example/h", post=post, signed=False
        )
        [(_, raw, headers), (_, _, unsigned)] = got
        verifier = EventWebhook(fake.public_key)
        assert verifier.verify_signature(
            raw.decode(), headers[SIGNATURE_HEADER], headers[TIMESTAMP_HEADER]
        )
        assert SIGNATURE_HEADER not in unsigned
    finally:
        fake.server.server_close()


def test_accepted_mail_comes_back_as_events_in_batches(
    sg: tuple[FakeSendGrid, httpx.Client],
) -> None:
    fake, client = sg
    body = {
        "from": {"email": "news@example.org"},
        "subject": "Hello",
        "content": [{"type": "text/plain", "value": "Hi"}],
        "personalizations": [
            {"to": [{"email": f"r{n}@example.net"}], "custom_args": {"delivery_id": str(n)}}
            for n in range(5)
        ],
    }
    assert client.post("/v3/mail/send", json=body).status_code == 202
    got, post = _catching()
    posted = fake.post_accepted(batch=2, url="https://a.example/h", post=post)
    assert [len(p.events) for p in posted] == [2, 2, 1]
    events = [e for _, raw, _ in got for e in json.loads(raw)]
    assert [e["delivery_id"] for e in events] == ["0", "1", "2", "3", "4"]
    [request] = fake.accepted
    assert all(e["sg_message_id"].startswith(request.message_id + ".") for e in events)
    assert fake.post_accepted(url="https://a.example/h", post=post) == []  # each once


def test_posting_in_the_background_until_the_block_ends(
    sg: tuple[FakeSendGrid, httpx.Client],
) -> None:
    fake, client = sg
    got, post = _catching()
    body = {
        "from": {"email": "news@example.org"},
        "subject": "Hello",
        "content": [{"type": "text/plain", "value": "Hi"}],
        "personalizations": [{"to": [{"email": "r@example.net"}]}],
    }
    with fake.posting(every=0.01, url="https://a.example/h", post=post):
        client.post("/v3/mail/send", json=body)  # posted by the thread, or at the block's end
    assert len(got) == 1 and json.loads(got[0][1])[0]["email"] == "r@example.net"


@pytest.mark.parametrize(
    ("content_type", "status"),
    [
        ("application/json", 202),
        ("application/json; charset=utf-8", 202),
        ("Application/JSON;charset=UTF-8", 202),  # media types are case-insensitive
        ("application/json; charset=latin-1", 400),
        ("text/plain", 400),
    ],
)
def test_mail_send_takes_json_in_utf8_only(
    sg: tuple[FakeSendGrid, httpx.Client], content_type: str, status: int
) -> None:
    fake, client = sg
    body = {
        "personalizations": [{"to": [{"email": "reader@example.org"}]}],
        "from": {"email": "news@example.com"},
        "subject": "Hello",
        "content": [{"type": "text/plain", "value": "Hi"}],
    }
    answer = client.post(
        "/v3/mail/send", content=json.dumps(body), headers={"Content-Type": content_type}
    )
    assert answer.status_code == status
    assert bool(fake.requests[-1].problems) == (status == 400)
