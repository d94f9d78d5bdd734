"""store.webhooks_out: what an event's body holds for a reader marked erased."""

from __future__ import annotations

import datetime as dt
import json

from newsletter.core import sealing
from newsletter.store import webhooks_out
from newsletter.store.db import session_scope
from newsletter.store.models import ERASED, Subscriber

T0 = dt.datetime(2026, 12, 7, 9, 0, tzinfo=dt.UTC)


def test_a_reader_marked_erased_never_has_the_address_in_a_body(settings) -> None:
    with session_scope(settings.database_url) as s:
        webhooks_out.add_endpoint(
            s, "https://hooks.example.net/in", ["unsubscribed"], True, sealing.seal("k", "x")
        )
        row = Subscriber(
            public_id="p1", email="gone@example.org", email_key="gone@example.org",
            timezone="UTC", status=ERASED,
        )  # fmt: skip
        s.add(row)
        s.flush()
        assert webhooks_out.record(s, webhooks_out.UNSUBSCRIBED_EVENT, row, T0) == 1
        row.status = "active"
        assert webhooks_out.record(s, webhooks_out.UNSUBSCRIBED_EVENT, row, T0) == 1
        endpoint = webhooks_out.endpoints(s)[0]
        first, second = reversed(webhooks_out.log(s, endpoint.id))
    assert json.loads(first.body)["reader"] == {"id": "p1"}
    assert json.loads(second.body)["reader"] == {"id": "p1", "email": "gone@example.org"}
