"""Subscriber pages at scale: the list, a search and its pages, a person's page, each in a
fixed number of SQL statements whatever the number of readers."""

from __future__ import annotations

import time_machine
from engine_support import ship, utc
from scale_support import add_readers, page_statements
from web_helpers import as_admin, csrf, signed_in

from newsletter.core.config import Settings

NOW = utc(2027, 1, 4, 12)  # Monday


def test_the_subscriber_pages_run_as_many_statements_for_200_readers_as_for_10(
    settings: Settings,
) -> None:
    s = as_admin(settings)
    ship(s, NOW)
    ids = add_readers(s, NOW, 10)
    with time_machine.travel(NOW, tick=False):
        c, _ = signed_in(s)
        token = csrf(c, "/admin/subscribers")

        def counts() -> list[int]:
            search = {"csrf_token": token, "q": "okafor", "status": "", "page": "1"}
            return [
                page_statements(s, c, "GET", "/admin/subscribers"),
                page_statements(s, c, "GET", "/admin/subscribers?status=active&page=2"),
                page_statements(s, c, "POST", "/admin/subscribers/search", data=search),
                page_statements(s, c, "GET", f"/admin/subscribers/{ids[1]}"),
            ]

        few = counts()
        add_readers(s, NOW, 190, start=10)
        many = counts()
        second = c.post(
            "/admin/subscribers/search",
            data={"csrf_token": token, "q": "OKAFOR", "status": "", "page": "2"},
        ).text
    assert few == many
    assert "50 people found" in second and "page 2 of 1" not in second
    assert second.count("/admin/subscribers/") >= 1
