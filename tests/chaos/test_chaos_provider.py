"""Provider faults with 2,500 subscribers due at one slot (three SendGrid requests of 1,000).

Each test: one fault at SLOT, recovery at later simulated times, then part 2 a week later, and
the invariant checker over the ledger and the stand-in's record of accepted mail.
"""

from __future__ import annotations

import pytest
from conftest import PEOPLE, SLOT, WEEK, World, hours, minutes

pytestmark = pytest.mark.chaos


def part_two(world: World) -> None:
    """The weekly tick for part 2: everyone gets it, once, with no fault."""
    summary = world.tick(WEEK)
    assert summary is not None and summary["sent"] == PEOPLE, summary


def test_rate_limited_first_request(sendgrid_world: World) -> None:
    """(1) 429 with X-RateLimit-Reset on the first full request: those 1,000 wait, none lost."""
    w = sendgrid_world
    w.seed()
    assert w.fake is not None
    w.fake.rate_limit(reset_at=(SLOT + minutes(2)).timestamp())
    first = w.tick(minutes(0))
    assert first == {"due": PEOPLE, "sent": 1500, "retry": 1000, "skipped": 0, "failed": 0}
    again = w.tick(minutes(5))
    assert again is not None and again["sent"] == 1000 and again["failed"] == 0, again
    part_two(w)
    w.check()


def test_server_errors_on_first_four_requests(sendgrid_world: World) -> None:
    """(2) 500 on the first four requests: plain retries with backoff, nobody lost or doubled."""
    w = sendgrid_world
    w.seed()
    assert w.fake is not None
    for _ in range(4):
        w.fake.server_error(500)
    first = w.tick(minutes(0))
    assert first is not None and first["sent"] == 0 and first["retry"] == PEOPLE, first
    assert first["failed"] == 0, first
    sent = 0
    for delta in (minutes(5), minutes(30), hours(2)):  # past any backoff the product picks
        summary = w.tick(delta)
        assert summary is not None and summary["failed"] == 0, summary
        sent += summary["sent"]
    assert sent == PEOPLE
    part_two(w)
    w.check()
