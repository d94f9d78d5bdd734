"""services/received: only parts the ledger says went out can be asked for again; the counter
and the reader's status decide whether the copy goes; erased readers are nobody."""

from __future__ import annotations

import pytest
from engine_support import add_person, ledger, outbox_mails, ship, utc

from newsletter.core.config import Settings
from newsletter.engine.tick import tick
from newsletter.services import received
from newsletter.store.db import session_scope
from newsletter.store.models import Subscriber

MYTHS = "myths-about-psychotherapy"


def _reader(settings: Settings) -> tuple[str, str]:
    start = utc(2027, 2, 1, 12)
    ship(settings, start)
    sid = add_person(settings, start, "Europe/London")
    assert tick(settings, utc(2027, 2, 2, 9)).sent == 1  # part 1
    with session_scope(settings.database_url) as s:
        sub = s.get(Subscriber, sid)
        assert sub is not None
        return sub.public_id, sub.email


def test_a_copy_of_a_received_part_counts_then_goes_outside_the_ledger(settings: Settings) -> None:
    public_id, address = _reader(settings)
    items = received.received(settings, public_id)
    assert [(i.key, i.number) for i in items] == [(f"{MYTHS}/1", 1)]
    not_had = received.ask_again(settings, public_id, f"{MYTHS}/2")
    assert (not_had.known, not_had.copy) == (False, None)
    asked = received.ask_again(settings, public_id, f"{MYTHS}/1")
    assert asked.known and asked.copy is not None and asked.copy.count == 4
    before, keys = ledger(settings), []
    received.send_copy(settings, asked.copy, lambda key: keys.append(key) or False)
    assert keys == [received.COUNTER + asked.copy.subscriber.email_key]  # counted, refused
    assert sum(address in str(m["To"]) for m in outbox_mails(settings)) == 1
    received.send_copy(settings, asked.copy, lambda key: True)
    assert sum(address in str(m["To"]) for m in outbox_mails(settings)) == 2
    assert ledger(settings) == before  # a copy is not a delivery


def test_an_erased_reader_is_nobody(settings: Settings) -> None:
    public_id, _address = _reader(settings)
    with session_scope(settings.database_url) as s:
        sub = s.query(Subscriber).filter_by(public_id=public_id).one()
        sub.status = "erased"
    with pytest.raises(received.NoReader):
        received.received(settings, public_id)
    with pytest.raises(received.NoReader):
        received.ask_again(settings, public_id, f"{MYTHS}/1")
    with pytest.raises(received.NoReader):
        received.received(settings, "no-such-reader")
