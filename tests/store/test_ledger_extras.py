"""store.ledger.extras: extra sends (a part again, a correction) are one row per form key on
both databases, go claimed -> handed -> sent once, and only the ledger package writes them."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from engine_support import add_person, ship, utc
from sqlalchemy import select

import newsletter
from newsletter.core.config import Settings
from newsletter.store.db import session_scope
from newsletter.store.ledger import extras
from newsletter.store.models import ExtraSend

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
        assert extras.hand_over_extras(session, [first], NOW) == [first]
        assert extras.hand_over_extras(session, [first], NOW) == []  # a second sender: nothing
        extras.record_extras(session, [(first, "m-1")], [], NOW)
        extras.give_up(session, [first], NOW, "late")  # a settled row stays settled
    with session_scope(settings.database_url) as session:
        rows = {x.id: x.status for x in extras.extras_of(session, sub)}
    assert rows == {first: "sent", other: "claimed"}


def test_a_batch_is_handed_over_once_and_only_handed_rows_are_recorded(
    settings: Settings,
) -> None:
    """The batch's compare-and-set: a second hand-over of overlapping rows gets only the ones
    still claimed; recording touches handed rows only (a claimed row is not settled by it)."""
    ids = ship(settings, NOW)
    myths = ids["myths-about-psychotherapy"]
    subs = [add_person(settings, NOW) for _ in range(4)]
    with session_scope(settings.database_url) as session:
        wanted = [(f"fix-{s}", s, myths, 1) for s in subs]
        rows = extras.add_extras(session, extras.CORRECTION, wanted, NOW)
    with session_scope(settings.database_url) as session:
        assert extras.hand_over_extras(session, rows[:2], NOW) == rows[:2]
    with session_scope(settings.database_url) as session:
        assert extras.hand_over_extras(session, rows, NOW) == rows[2:]  # the rest only
        assert extras.hand_over_extras(session, rows, NOW) == []
    with session_scope(settings.database_url) as session:
        extras.record_extras(session, [(rows[0], "m-0")], [(rows[1], "bounced")], NOW)
        extras.record_extras(session, [(rows[0], "m-again")], [(rows[0], "late")], NOW)
        found = {x.id: x for x in extras.extras_by_id(session, rows)}
        targets = {t.id: t for t in extras.targets(session, rows)}
    assert found[rows[0]].status == "sent" and found[rows[1]].status == "failed"
    assert found[rows[1]].last_error == "bounced"
    assert {found[r].status for r in rows[2:]} == {"handed"}
    assert [targets[r].subscriber_id for r in rows] == subs
    assert all(t.active and t.email and t.public_id for t in targets.values())
    with session_scope(settings.database_url) as session:
        message_id = session.scalar(
            select(ExtraSend.provider_message_id).where(ExtraSend.id == rows[0])
        )
    assert message_id == "m-0"  # a settled row is not written again


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
