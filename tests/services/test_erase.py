"""Erase leaves nothing behind (issue 13 #7): events arriving later are scrubbed, the outbox
copies go, and the address is kept only as a keyed hash (old plain hashes still block)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from newsletter.core import identity
from newsletter.core.config import Settings, load_settings
from newsletter.services import people, roster
from newsletter.store.db import session_scope
from newsletter.store.models import Base, ProviderEvent, Suppression
from newsletter.web.app import create_app

GONE = "gone@example.org"


def everything_stored(settings: Settings) -> str:
    """Every row of every table, as text (to look for an address anywhere in the database)."""
    with session_scope(settings.database_url) as session:
        return "\n".join(
            repr(list(row))
            for table in Base.metadata.sorted_tables
            for row in session.execute(select(table))
        ).lower()


def post_events(settings: Settings, batch: list[dict[str, object]]) -> None:
    allowed = load_settings(**{**settings.model_dump(), "webhook_allow_unsigned": True})
    with TestClient(create_app(allowed)) as client:
        response = client.post("/webhooks/sendgrid", content=json.dumps(batch))
    assert response.status_code == 200, response.text


def event(n: int, kind: str, email: str) -> dict[str, object]:
    return {"event": kind, "sg_event_id": f"ev-{n}", "timestamp": 1767225600 + n, "email": email}


def test_events_arriving_after_erase_keep_no_address(settings: Settings) -> None:
    roster.add_subscriber(settings, email=GONE, confirmed=True)
    roster.add_subscriber(settings, email="stays@example.org", confirmed=True)
    assert roster.erase_email(settings, GONE)
    with session_scope(settings.database_url) as session:  # erased before keyed hashes existed
        session.add(
            Suppression(
                email_hash=identity.email_hash("old@example.org"), reason="erased", keyed=False
            )
        )
    post_events(
        settings,
        [
            event(1, "processed", "Gone@Example.org") | {"response": "250 ok <gone@example.org>"},
            event(2, "bounce", GONE) | {"reason": "550 5.1.1 <gone@example.org>: no such user"},
            event(3, "dropped", GONE) | {"reason": "Bounced Address gone@example.org"},
            event(4, "bounce", "old@example.org") | {"reason": "550 <old@example.org> unknown"},
            event(5, "bounce", "stays@example.org") | {"reason": "550 <stays@example.org> full"},
        ],
    )
    stored = everything_stored(settings)
    assert "gone@" not in stored and "old@" not in stored
    with session_scope(settings.database_url) as session:
        rows = {e.event_id: e for e in session.scalars(select(ProviderEvent))}
        assert set(rows) == {"ev-1", "ev-2", "ev-3", "ev-4", "ev-5"}  # each still counted
        assert rows["ev-2"].event_type == "bounce" and rows["ev-2"].subscriber_id is None
        assert rows["ev-2"].detail in (None, "bounce")  # the type at most, never the text
        assert rows["ev-5"].detail == "550 <stays@example.org> full"  # others are untouched
        assert rows["ev-5"].subscriber_id is not None


def test_erase_deletes_the_persons_outbox_files(settings: Settings) -> None:
    roster.add_subscriber(settings, email=GONE)  # pending: a confirmation email in the outbox
    roster.add_subscriber(settings, email="stays@example.org")
    files = sorted(Path(settings.outbox_dir).glob("*.eml"))
    assert len(files) == 2 and not any("@" in p.name or "gone" in p.name for p in files)
    # one written before names carried a tag: found by its To header
    mine = next(p for p in files if b"gone@example.org" in p.read_bytes())
    untagged = mine.with_name(mine.name.rsplit("-p", 1)[0] + ".eml")
    os.link(mine, untagged)
    assert roster.erase_email(settings, GONE)
    left = sorted(Path(settings.outbox_dir).glob("*.eml"))
    assert len(left) == 1 and b"stays@example.org" in left[0].read_bytes()


def test_bulk_lookup_reads_all_or_asks_by_key_with_the_same_answer(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    with session_scope(settings.database_url) as session:
        people.suppress(session, settings.secret, GONE)
        plain = identity.email_hash("old@example.org")
        session.add(Suppression(email_hash=plain, reason="erased", keyed=False))
    asked = [GONE.upper(), "old@example.org", "stays@example.org"] * 400
    with session_scope(settings.database_url) as session:
        read_all = people.suppressed_among(session, settings.secret, asked)
        monkeypatch.setattr(people, "READ_ALL_SUPPRESSIONS", 0)  # as if there were very many
        by_key = people.suppressed_among(session, settings.secret, asked)
    assert read_all == by_key == {GONE, "old@example.org"}


def test_suppressions_are_keyed_and_old_plain_ones_still_block(settings: Settings) -> None:
    roster.add_subscriber(settings, email=GONE, confirmed=True)
    assert roster.erase_email(settings, GONE)
    with session_scope(settings.database_url) as session:
        row = session.scalar(select(Suppression))
        assert row is not None and row.keyed
        assert row.email_hash == identity.suppression_key(settings.secret, GONE)
        assert row.email_hash != identity.email_hash(GONE)  # not the plain SHA-256 any more
        other = identity.suppression_key("another secret key", GONE)
        assert row.email_hash != other  # keyed: a database copy can't be tested alone
    with pytest.raises(roster.RosterError, match="erased"):
        roster.add_subscriber(settings, email="Gone@example.org")

    for address in ("old@example.org", "older@example.org"):  # stored the old way
        with session_scope(settings.database_url) as session:
            plain = identity.email_hash(address)
            session.add(Suppression(email_hash=plain, reason="erased", keyed=False))
    with pytest.raises(roster.RosterError, match="erased"):
        roster.add_subscriber(settings, email="old@example.org")
    with session_scope(settings.database_url) as session:  # a lookup that hits re-keys it
        assert people.is_suppressed(session, settings.secret, "Old@example.org")
    with session_scope(settings.database_url) as session:
        keyed = set(session.scalars(select(Suppression.email_hash).where(Suppression.keyed)))
        assert identity.suppression_key(settings.secret, "old@example.org") in keyed  # lazily
        assert people.suppressed_among(session, settings.secret, ["OLDER@example.org"]) == {
            "older@example.org"
        }
        assert people.rekey_suppressions(session, settings.secret) == 1
    with session_scope(settings.database_url) as session:
        rows = list(session.scalars(select(Suppression)))
        assert len(rows) == 3 and all(r.keyed for r in rows)
        assert identity.email_hash("older@example.org") not in {r.email_hash for r in rows}
        assert people.is_suppressed(session, settings.secret, "older@example.org")
