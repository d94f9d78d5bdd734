"""Bad SendGrid webhook posts never crash (no 500) and never half-store an event.

The choice (documented in events.process_sendgrid): a batch is stored event by event. Every
valid event is stored once with all its effects; every invalid one is left out whole and named
in the answer's "malformed" list by its index ("event 3: missing or invalid 'email'"), and the
answer is 200 so SendGrid does not retry the good ones. A body that is not a JSON array of
events (not JSON, nested too deeply, an object, too large) is refused whole with a 4xx and
stores nothing.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from paths import TESTS
from sqlalchemy import func, select

from newsletter.core.config import Settings, load_settings
from newsletter.engine import events
from newsletter.store.db import session_scope
from newsletter.store.models import ACTIVE, ProviderEvent, Subscriber
from newsletter.web.app import create_app

CORPUS = TESTS / "corpus" / "webhook"
REFUSED = {
    "not_json.json",
    "object.json",
    "number.json",
    "string.json",
    "empty.json",
    "deep_nesting.json",
    "invalid_utf8.json",
    "nan.json",  # NaN is not JSON's; Python would read it, the timestamp check refuses it
}


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    """Unsigned posts (allowed explicitly, no key): the body checks are what is under test."""
    allowed = load_settings(**{**settings.model_dump(), "webhook_allow_unsigned": True})
    with TestClient(create_app(allowed), raise_server_exceptions=False) as c:
        yield c


def stored_ids(settings: Settings) -> set[str]:
    with session_scope(settings.database_url) as session:
        return set(session.scalars(select(ProviderEvent.event_id)))


@pytest.mark.parametrize("name", sorted(p.name for p in CORPUS.glob("*.json")))
def test_corpus_body_is_answered_without_a_server_error(
    client: TestClient, settings: Settings, name: str
) -> None:
    raw = (CORPUS / name).read_bytes()
    r = client.post("/webhooks/sendgrid", content=raw)
    assert r.status_code < 500, (name, r.status_code, r.text[:300])
    body = r.json()
    if r.status_code >= 400:
        assert isinstance(body["error"], str) and "Traceback" not in body["error"]
        assert stored_ids(settings) == set()
    else:
        assert set(body) == {"ok", "received", "malformed"}  # nothing about who is on the list
        assert len(stored_ids(settings)) + len(body["malformed"]) <= body["received"]
    if name in ("deep_nesting.json",):
        assert r.status_code == 400 and "nested" in body["error"]
    if name == "huge_array.json":
        assert r.status_code == 200 and stored_ids(settings) == set()
        assert len(body["malformed"]) == body["received"] == 20_000
    if name in ("bom.json", "utf16.json"):
        assert r.status_code in (200, 400)


def good(event_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "email": "ann@example.org",
        "timestamp": 1764000000,
        "event": "delivered",
        "sg_event_id": event_id,
        **extra,
    }


UNSTORABLE = [
    ("event", "delivered\x00"),
    ("sg_event_id", "id\x00nul"),
    ("sg_event_id", "id\ud800"),
    ("sg_event_id", "x" * 129),
    ("email", "ann\x00@example.org"),
    ("email", "\udc80@example.org"),
    ("email", ["ann@example.org"]),
    ("timestamp", True),
    ("timestamp", "1e999"),
    ("timestamp", 10**400),
    ("timestamp", {"at": 1}),
    ("event", None),
    ("event", ["delivered"]),
]


def test_unstorable_values_are_malformed_and_the_rest_stored(
    client: TestClient, settings: Settings
) -> None:
    batch: list[Any] = [good("keep-1")]
    for index, (key, value) in enumerate(UNSTORABLE):
        batch.append({**good(f"bad-{index}"), key: value})
    batch.append(
        good(
            "keep-2",
            event="weird-name",
            reason="spaces\x00and\x1bescapes\ud800" * 100,
            sg_message_id="m\x00id.filter",
            delivery_id="\u00b2",  # a digit to str.isdigit, not to int()
        )
    )
    batch.append(good("keep-3", delivery_id=10**30, kind=["article"], type={"a": [1, [2]]}))
    raw = json.dumps(batch).encode()
    r = client.post("/webhooks/sendgrid", content=raw)
    assert r.status_code == 200, r.text[:500]
    body = r.json()
    assert body["received"] == len(batch)
    malformed = [int(m.split(":")[0].split()[1]) for m in body["malformed"]]
    assert malformed == list(range(1, len(UNSTORABLE) + 1))
    assert stored_ids(settings) == {"keep-1", "keep-2", "keep-3"}
    with session_scope(settings.database_url) as session:
        detail = session.scalar(
            select(ProviderEvent.detail).where(ProviderEvent.event_id == "keep-2")
        )
    assert detail is not None and "\x00" not in detail and "\ud800" not in detail


def test_parse_never_raises_anything_but_malformed_event() -> None:
    for key, value in UNSTORABLE:
        with pytest.raises(events.MalformedEvent):
            events.parse_sendgrid({**good("x"), key: value})
    event = events.parse_sendgrid(good("x", delivery_id="\u00b2"))
    assert event.delivery_ref is None


# --- properties ----------------------------------------------------------------------------

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
    | st.sampled_from(["\x00", "\ud800", "²", "1e999", "bounce", "delivered", "@", "blocked"]),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
FIELDS = ["email", "timestamp", "event", "sg_event_id", "delivery_id", "reason", "type", "kind",
          "sg_message_id", "response"]  # fmt: skip


@st.composite
def batch(draw: st.DrawFn) -> tuple[list[Any], set[str]]:
    """A batch of valid events, events with one field replaced, and arbitrary JSON values;
    with the event ids that must be stored."""
    items: list[Any] = []
    must: set[str] = set()
    run = draw(st.integers(0, 10**9))
    for index in range(draw(st.integers(0, 10))):
        kind = draw(st.sampled_from(["good", "mutated", "json"]))
        event_id = f"p-{run}-{index}"
        if kind == "good":
            items.append(good(event_id, event=draw(st.sampled_from(["delivered", "open", "x"]))))
            must.add(event_id)
        elif kind == "mutated":
            items.append({**good(event_id), draw(st.sampled_from(FIELDS)): draw(JSON)})
        else:
            items.append(draw(JSON))
    return items, must


@hsettings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(case=batch())
def test_any_batch_stores_each_good_event_whole_and_names_each_bad_one(
    client: TestClient, settings: Settings, case: tuple[list[Any], set[str]]
) -> None:
    items, must = case
    before = stored_ids(settings)
    raw = json.dumps(items).encode("utf-8", "surrogatepass")
    r = client.post("/webhooks/sendgrid", content=raw)
    assert r.status_code == 200, r.text[:500]
    body = r.json()
    assert body["received"] == len(items)
    bad = {int(m.split(":")[0].split()[1]) for m in body["malformed"]}
    new = stored_ids(settings) - before
    assert must <= new | before  # every valid event is stored (once: ids are unique)
    assert len(new) <= len(items) - len(bad)
    for index, item in enumerate(items):  # a malformed event left nothing behind
        if index in bad and isinstance(item, dict) and isinstance(item.get("sg_event_id"), str):
            assert item["sg_event_id"] not in new
    for event_id in new:  # and whatever was stored came from an event not reported bad
        indexes = [
            i
            for i, it in enumerate(items)
            if isinstance(it, dict) and it.get("sg_event_id") == event_id
        ]
        assert indexes and not set(indexes) <= bad


def test_a_bad_event_does_not_undo_suppression_by_a_good_one(
    client: TestClient, settings: Settings
) -> None:
    with session_scope(settings.database_url) as session:
        session.add(
            Subscriber(
                public_id="p1", email="bye@example.org", email_key="bye@example.org",
                timezone="UTC", status=ACTIVE,
            )
        )  # fmt: skip
    batch = [
        {**good("u-1"), "email": "bye@example.org", "event": "unsubscribe"},
        {**good("u-2"), "email": "bye@example.org", "event": "bounce", "timestamp": "never"},
    ]
    r = client.post("/webhooks/sendgrid", content=json.dumps(batch).encode())
    assert r.status_code == 200 and r.json()["received"] == 2
    with session_scope(settings.database_url) as session:
        status = session.scalar(select(Subscriber.status).where(Subscriber.public_id == "p1"))
        count = session.scalar(select(func.count(ProviderEvent.id)))
    assert status == "unsubscribed" and count == 1
