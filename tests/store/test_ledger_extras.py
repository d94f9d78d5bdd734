"""store.ledger.extras: extra sends (a part again, a correction) are one row per form key on
both databases, go claimed -> handed -> sent once, and only the ledger package writes them."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from engine_support import add_person, ship, utc

import newsletter
from newsletter.core.config import Settings
from newsletter.store.db import session_scope
from newsletter.store.ledger import extras

NOW = utc(2026, 3, 2, 12)
PACKAGE = Path(newsletter.__file__).resolve().parent
LEDGER = PACKAGE / "store" / "ledger"
RAW_WRITE = re.compile(r"\b(insert\s+into|update|delete\s+from)\s+[\"`]?extra_sends\b", re.I)


def test_one_row_per_key_and_one_hand_over(settings: Settings) -> None:
    ids = ship(settings, NOW)
    sub = add_person(settings, NOW)
    myths = ids["myths-about-psychotherapy"]
    with session_scope(settings.database_url) as session:
        [first] = extras.add_extras(session, extras.AGAIN, [("again-a", sub, myths, 1)], NOW)
        assert extras.add_extras(session, extras.AGAIN, [("again-a", sub, myths, 1)], NOW) == []
        [other] = extras.add_extras(session, extras.AGAIN, [("again-b", sub, myths, 1)], NOW)
        assert other != first
    with session_scope(settings.database_url) as session:
        assert extras.hand_over_extra(session, first, NOW)
        assert not extras.hand_over_extra(session, first, NOW)  # a second sender gets nothing
        extras.record_extra(session, first, True, NOW, message_id="m-1")
        extras.give_up(session, [first], NOW, "late")  # a settled row stays settled
    with session_scope(settings.database_url) as session:
        rows = {x.id: x.status for x in extras.extras_of(session, sub)}
    assert rows == {first: "sent", other: "claimed"}


def extra_writes(path: Path) -> list[str]:
    """Where `path` writes `extra_sends`: insert/update/delete of ExtraSend, an ExtraSend(...)
    row built, or raw SQL naming the table."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}
        if isinstance(node, ast.Call) and "ExtraSend" in names:
            func = node.func
            name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
            if name in {"insert", "update", "delete", "ExtraSend"}:
                found.append(f"{path.name}:{node.lineno} {name}")
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and RAW_WRITE.search(node.value)
        ):
            found.append(f"{path.name}:{node.lineno} raw SQL")
    return found


def test_no_module_outside_the_ledger_writes_extra_sends(tmp_path: Path) -> None:
    outside = [
        hit
        for path in sorted(PACKAGE.rglob("*.py"))
        if LEDGER not in path.parents
        and path.name != "models.py"
        and "migrations" not in path.parts
        for hit in extra_writes(path)
    ]
    assert outside == [], "write extra sends through newsletter.store.ledger.extras"
    assert extra_writes(LEDGER / "extras.py")  # the scan sees the real writer
    stray = tmp_path / "stray.py"
    stray.write_text("session.add(ExtraSend(kind='again'))\nupdate(ExtraSend).values(x=1)\n")
    assert len(extra_writes(stray)) == 2
