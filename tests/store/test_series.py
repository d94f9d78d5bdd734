"""store/series.py: `by_slug` is the one lookup of a series by its slug."""

from __future__ import annotations

import re
from pathlib import Path

from engine_support import ship, utc

import newsletter
from newsletter.core.config import Settings
from newsletter.store import series as series_store
from newsletter.store.db import session_scope

PACKAGE = Path(newsletter.__file__).resolve().parent
HOME = PACKAGE / "store" / "series.py"
LOOKUP = re.compile(r"select\(\s*Series(\.id)?\s*\)\s*\.where\(\s*Series\.slug\s*==")


def test_by_slug_finds_the_series_and_none_for_an_unknown_slug(settings: Settings) -> None:
    ids = ship(settings, utc(2030, 3, 4, 12))
    with session_scope(settings.database_url) as session:
        for slug, series_id in ids.items():
            found = series_store.by_slug(session, slug)
            assert found is not None and (found.id, found.slug) == (series_id, slug)
        assert series_store.by_slug(session, "no-such-series") is None


def test_no_module_but_store_series_looks_a_series_up_by_slug_itself() -> None:
    copies = [
        f"{path.relative_to(PACKAGE.parent)}:{text[: m.start()].count(chr(10)) + 1}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if path != HOME
        for text in [path.read_text()]
        for m in LOOKUP.finditer(text)
    ]
    assert copies == [], "call newsletter.store.series.by_slug:\n" + "\n".join(copies)
    assert LOOKUP.search(HOME.read_text())  # the pattern matches the one real lookup
