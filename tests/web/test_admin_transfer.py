"""The export at scale: streamed a batch at a time, the first rows before the whole list is read."""

from __future__ import annotations

import pytest
import time_machine
from engine_support import ship, utc
from scale_support import add_readers, statements
from web_helpers import as_admin, signed_in

from newsletter.core.config import Settings
from newsletter.store import export_rows

NOW = utc(2027, 1, 4, 12)  # Monday


def test_the_export_streams_its_first_rows_after_one_batch(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = as_admin(settings)
    ship(s, NOW)
    add_readers(s, NOW, 60)
    monkeypatch.setattr(export_rows, "PAGE_SIZE", 20)  # 60 readers: three pages
    with time_machine.travel(NOW, tick=False):
        c, _ = signed_in(s)
        for path in ("/admin/export.csv", "/admin/export.json"):
            with statements(s) as seen, c.stream("GET", path) as r:
                assert r.status_code == 200
                chunks = r.iter_bytes()
                head = b""
                while head.count(b"\n") < 3:
                    head += next(chunks)
                at_first_rows = len(seen)
                rest = b"".join(chunks)
            # the first rows came before the last batches were read (at most one chunk ahead)
            assert len(seen) - at_first_rows >= 2, (path, seen.seen)
            assert (head + rest).count(b"@example.org") == 60
