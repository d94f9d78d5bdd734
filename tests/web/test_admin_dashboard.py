"""The dashboard at scale: the same number of SQL statements for 10 readers as for 200."""

from __future__ import annotations

import time_machine
from engine_support import ship, utc
from scale_support import add_readers, page_statements
from web_helpers import as_admin, signed_in

from newsletter.core.config import Settings

NOW = utc(2027, 1, 4, 12)  # Monday


def test_the_dashboard_runs_as_many_statements_for_200_readers_as_for_10(
    settings: Settings,
) -> None:
    s = as_admin(settings)
    ship(s, NOW)
    add_readers(s, NOW, 10)
    with time_machine.travel(NOW, tick=False):
        c, _ = signed_in(s)
        few = page_statements(s, c, "GET", "/admin")
        add_readers(s, NOW, 190, start=10)
        many = page_statements(s, c, "GET", "/admin")
        page = c.get("/admin").text
    assert few == many
    assert "mailbox full" in page  # the failures list is there
