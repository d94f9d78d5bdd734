"""The ledger's bulk writes: `record` and `move_enrollments` store the same values on SQLite (a
raw executemany of pre-converted tuples) as on PostgreSQL (array parameters), readable through
the ORM; datetimes in exactly the form SQLAlchemy writes them."""

from __future__ import annotations

import ast
import contextlib
import datetime as dt
import math
import re
from pathlib import Path

from engine_support import add_person, ship, utc
from scale_support import BATCH, BATCH_SLOT, batch_readers, delivery_statuses, statements
from sendgrid_fake import FakeSendGrid
from sqlalchemy import delete, select

import newsletter
from newsletter.core.config import Settings
from newsletter.engine.plan import plan as plan_due
from newsletter.engine.reconcile import UNKNOWN_RESEND_AFTER, reconcile
from newsletter.engine.send import send_chunk
from newsletter.store.db import session_scope
from newsletter.store.ledger import (
    RESENT_NOTE,
    Claim,
    SentRow,
    claim_round,
    insert_claims,
    move_enrollments,
    record,
    take_back_keys,
    take_back_ready,
)
from newsletter.store.models import CLAIMED, RETRY, SENT, Delivery, Enrollment

NOW = utc(2030, 3, 5, 9, 0, 7)
STORED = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}$")  # SQLAlchemy's SQLite form


def _claimed(settings: Settings, people: int) -> tuple[list[int], list[int]]:
    """`people` readers with part 1 claimed in the ledger: (delivery ids, enrollment ids)."""
    ship(settings, utc(2030, 3, 4, 12))
    subs = [add_person(settings, utc(2030, 3, 4, 12), "UTC") for _ in range(people)]
    with session_scope(settings.database_url) as session:
        places = list(
            session.scalars(
                select(Enrollment)
                .where(Enrollment.subscriber_id.in_(subs))
                .order_by(Enrollment.subscriber_id, Enrollment.series_id)
            )
        )
        first = {}
        for e in places:
            first.setdefault(e.subscriber_id, e)
        wanted = {
            (e.subscriber_id, e.series_id, e.next_part): Claim(e.id, e.next_due_at)
            for e in first.values()
        }
        made = insert_claims(session, wanted, NOW)
    return sorted(made.values()), [e.id for e in first.values()]


def test_record_marks_sent_keeps_only_the_resent_note_and_counts_down_crashes(
    settings: Settings,
) -> None:
    ids, _ = _claimed(settings, 3)
    with session_scope(settings.database_url) as session:
        for i, delivery_id in enumerate(ids):
            row = session.get(Delivery, delivery_id)
            assert row is not None
            row.crashes = 2
            row.last_error = f"{RESENT_NOTE} (at 09:00)" if i == 0 else "a 429 earlier"
    with session_scope(settings.database_url) as session:
        record(session, [SentRow(i, f"msg-{i}") for i in ids], [], NOW)
    with session_scope(settings.database_url) as session:
        rows = list(session.scalars(select(Delivery).order_by(Delivery.id)))
        assert [r.status for r in rows] == [SENT] * 3
        assert [r.provider_message_id for r in rows] == [f"msg-{i}" for i in ids]
        assert [r.sent_at for r in rows] == [NOW] * 3 and [r.updated_at for r in rows] == [NOW] * 3
        assert [r.created_at for r in rows] == [NOW] * 3  # written by insert_claims
        assert [r.scheduled_for for r in rows] == [utc(2030, 3, 5, 9)] * 3  # Tuesday's slot
        assert [r.retry_at for r in rows] == [None] * 3 and [r.crashes for r in rows] == [1] * 3
        assert [r.last_error for r in rows] == [f"{RESENT_NOTE} (at 09:00)", None, None]
        if session.get_bind().dialect.name == "sqlite":  # the stored text, as the ORM writes it
            raw = session.connection().exec_driver_sql(
                "SELECT sent_at, updated_at, created_at FROM deliveries"
            )
            for sent_at, updated_at, created_at in raw:
                assert STORED.match(sent_at) and sent_at == updated_at == created_at


def test_move_enrollments_writes_the_next_part_and_due_time_or_none(settings: Settings) -> None:
    _, places = _claimed(settings, 2)
    due = NOW + dt.timedelta(days=7)
    with session_scope(settings.database_url) as session:
        move_enrollments(session, [(places[0], 2, due), (places[1], 5, None)])
    with session_scope(settings.database_url) as session:
        first, second = (session.get(Enrollment, i) for i in places)
        assert first is not None and second is not None
        assert (first.next_part, first.next_due_at) == (2, due)
        assert (second.next_part, second.next_due_at) == (5, None)
        if session.get_bind().dialect.name == "sqlite":
            (stored,) = (
                session.connection()
                .exec_driver_sql(f"SELECT next_due_at FROM enrollments WHERE id = {places[0]}")
                .one()
            )
            assert stored == due.replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")


# --- one writer of the ledger --------------------------------------------------------------------

PACKAGE = Path(newsletter.__file__).resolve().parent
LEDGER = PACKAGE / "store" / "ledger"  # the package: every module in it may write
# the table's definition and its schema history, not writes of its rows
NOT_WRITERS = {PACKAGE / "store" / "models.py"}
RAW_WRITE = re.compile(r"\b(insert\s+into|update|delete\s+from)\s+[\"`]?deliveries\b", re.I)
WRITES = {"insert", "update", "delete"}


def in_ledger(path: Path) -> bool:
    """`path` is one of the ledger package's modules."""
    return LEDGER in path.parents


def _names_delivery(node: ast.AST) -> bool:
    """`Delivery`, `Delivery.__table__` or any expression built on them."""
    return any(isinstance(n, ast.Name) and n.id == "Delivery" for n in ast.walk(node))


def ledger_writes(path: Path) -> list[str]:
    """Where `path` writes the deliveries table: insert/update/delete of Delivery (or its
    table), a Delivery(...) row built for the session, a Delivery loaded by id to change it
    (session.get), its Core table taken for a bulk statement, or raw SQL that writes
    `deliveries`. As "file:line what"."""
    found: list[str] = []
    tree = ast.parse(path.read_text(), str(path))
    where = path.relative_to(PACKAGE.parent) if PACKAGE in path.parents else path
    for node in ast.walk(tree):
        what = None
        if isinstance(node, ast.Call):
            func = node.func
            name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
            if name in WRITES and node.args and _names_delivery(node.args[0]):
                what = f"{name}(Delivery)"
            elif isinstance(func, ast.Name) and func.id == "Delivery":
                what = "Delivery(...)"
            elif name == "get" and node.args and _names_delivery(node.args[0]):
                what = "session.get(Delivery, ...)"
        elif isinstance(node, ast.Attribute) and node.attr == "__table__":
            what = "Delivery.__table__" if _names_delivery(node.value) else None
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            raw = RAW_WRITE.search(node.value)
            what = f"raw SQL {raw.group(0)!r}" if raw else None
        if what is not None:
            found.append(f"{where}:{getattr(node, 'lineno', '?')} {what}")
    return found


def test_no_module_outside_the_ledger_writes_the_deliveries_table() -> None:
    """store/ledger/ is the one writer of `deliveries`: the engine, services and views call
    its functions. Migrations (the schema's history) and the model are not writers of rows."""
    outside = [
        hit
        for path in sorted(PACKAGE.rglob("*.py"))
        if not in_ledger(path) and path not in NOT_WRITERS and "migrations" not in path.parts
        for hit in ledger_writes(path)
    ]
    assert outside == [], "write the ledger through newsletter.store.ledger:\n" + "\n".join(outside)


def test_only_the_ledger_packages_own_modules_count_as_the_ledger(tmp_path: Path) -> None:
    """A writer beside the package (store/ledger_extra.py) or elsewhere is outside it, and the
    scan flags a Delivery write there: the guard above fails for it."""
    assert in_ledger(LEDGER / "handover.py") and in_ledger(LEDGER / "__init__.py")
    for path in (PACKAGE / "store" / "ledger_extra.py", PACKAGE / "engine" / "send.py", LEDGER):
        assert not in_ledger(path), path
    stray = tmp_path / "stray.py"
    stray.write_text("from sqlalchemy import update\nupdate(Delivery).values(status='sent')\n")
    assert [hit.split(" ", 1)[1] for hit in ledger_writes(stray)] == ["update(Delivery)"]


def test_the_scan_sees_the_ledgers_own_writes() -> None:
    """The scan finds every kind of write where they are (so an empty list above means none,
    not a blind scan): Core and ORM statements, raw SQL on both databases, the ORM settle."""
    modules = sorted(LEDGER.glob("*.py"))
    kinds = {hit.split(" ", 1)[1].split("'")[0] for path in modules for hit in ledger_writes(path)}
    assert {
        "update(Delivery)",
        "delete(Delivery)",
        "Delivery.__table__",
        "session.get(Delivery, ...)",
        "raw SQL ",
    } <= kinds, kinds


# Statements per 1,000-recipient chunk, per database, pinned at issue 26's numbers: they can only
# go down. (plan round, send_chunk) for the first chunk of a part; a later chunk of the same part
# skips the first-send stamp on SQLite (on PostgreSQL it rides in the outcome statement).
HAPPY = {"sqlite": (5, 10), "postgresql": (5, 8)}
LATER_CHUNK = {"sqlite": 9, "postgresql": 8}
# the round after a 429 for everyone: the retries taken back by their keys, no SELECT of them
RETRY_ROUND = {"sqlite": (6, 10), "postgresql": (5, 8)}
# after a crash mid-send: reconcile resent them, plan cuts them into chunks of ~√1,000 (33)
CRASH_PLAN = {"sqlite": 6, "postgresql": 5}
CRASH_SEND_PER_CHUNK = {"sqlite": 9, "postgresql": 8}  # + SQLite's one first-send stamp


def _dialect(settings: Settings) -> str:
    return "postgresql" if settings.database_url.startswith("postgresql") else "sqlite"


def test_a_full_chunk_costs_its_pinned_statements(sg: tuple[Settings, FakeSendGrid]) -> None:
    """The happy path: one plan round and one send_chunk for 1,000 accepted, then a second
    chunk of the same part (no first-send stamp left to write)."""
    settings, _ = sg
    batch_readers(settings, 2 * BATCH)
    with statements(settings) as planned:
        (first,) = plan_due(settings, BATCH_SLOT).chunks  # a round claims one batch
    (second,) = plan_due(settings, BATCH_SLOT).chunks
    with statements(settings) as sent:
        assert send_chunk(settings, first, BATCH_SLOT).sent == BATCH
    with statements(settings) as later:
        assert send_chunk(settings, second, BATCH_SLOT).sent == BATCH
    kind = _dialect(settings)
    assert (len(planned), len(sent)) == HAPPY[kind], (planned.seen, sent.seen)
    assert len(later) == LATER_CHUNK[kind], later.seen


def test_a_retry_round_costs_what_a_first_send_does(sg: tuple[Settings, FakeSendGrid]) -> None:
    settings, fake = sg
    batch_readers(settings)
    fake.rate_limit()
    (chunk,) = plan_due(settings, BATCH_SLOT).chunks
    assert send_chunk(settings, chunk, BATCH_SLOT).retry == BATCH
    at = BATCH_SLOT + dt.timedelta(minutes=2)
    with statements(settings) as planned:
        (chunk,) = plan_due(settings, at).chunks
    with statements(settings) as sent:
        assert send_chunk(settings, chunk, at).sent == BATCH
    assert (len(planned), len(sent)) == RETRY_ROUND[_dialect(settings)], (planned.seen, sent.seen)
    assert delivery_statuses(settings) == {SENT: BATCH}


class _Killed(BaseException):
    """The sending process dies between the hand-over and the provider's answer."""


def test_a_crash_round_costs_its_pinned_statements_per_chunk(
    sg: tuple[Settings, FakeSendGrid],
) -> None:
    settings, fake = sg
    batch_readers(settings)
    (chunk,) = plan_due(settings, BATCH_SLOT).chunks

    def die(_ids: list[int]) -> None:
        raise _Killed

    with contextlib.suppress(_Killed):
        send_chunk(settings, chunk, BATCH_SLOT, before_send=die)
    later = BATCH_SLOT + UNKNOWN_RESEND_AFTER + dt.timedelta(minutes=1)
    assert reconcile(settings, later).resent == BATCH
    with statements(settings) as planned:
        chunks = plan_due(settings, later).chunks
    with statements(settings) as sent:
        assert sum(send_chunk(settings, c, later).sent for c in chunks) == BATCH
    kind = _dialect(settings)
    assert len(chunks) == -(-BATCH // math.isqrt(BATCH))  # 33 chunks of at most 31
    assert len(planned) == CRASH_PLAN[kind], planned.seen
    stamp = 1 if kind == "sqlite" else 0
    assert len(sent) == CRASH_SEND_PER_CHUNK[kind] * len(chunks) + stamp, sent.seen[:20]
    assert delivery_statuses(settings) == {SENT: BATCH}
    assert len({e for r in fake.accepted for e in r.emails}) == BATCH


def test_taking_retries_back_by_key_writes_what_taking_them_back_by_id_does(
    settings: Settings,
) -> None:
    """The bulk take-back by (subscriber, series, part) (PostgreSQL: in the round's one claim
    statement; SQLite: one UPDATE … FROM after the INSERT) leaves the same rows as the by-id
    compare-and-set: due retries claimed at `now`, crashes kept, a retry not yet due and a row
    in another state untouched, and for PostgreSQL a fresh key inserted in the same statement."""
    ids, _ = _claimed(settings, 5)
    later = NOW + dt.timedelta(hours=1)
    with session_scope(settings.database_url) as session:
        rows = [session.get(Delivery, i) for i in ids]
        for row, (status, retry_at) in zip(
            rows,
            [(RETRY, NOW), (RETRY, NOW), (RETRY, later + dt.timedelta(hours=1)), (SENT, None)],
            strict=False,
        ):
            assert row is not None
            row.status, row.retry_at, row.crashes = status, retry_at, 1
        keys = {(r.subscriber_id or 0, r.series_id, r.part_number): r.id for r in rows if r}
        by_key, by_id = ids[0], ids[1]
        fifth = next(k for k, i in keys.items() if i == ids[4])
    with session_scope(settings.database_url) as session:
        session.execute(delete(Delivery).where(Delivery.id == ids[4]))  # a key with no row
        chosen = [k for k, i in keys.items() if i not in (by_id,)]
        wanted = {k: Claim(0, NOW) for k in chosen}
        if session.get_bind().dialect.name == "postgresql":
            taken, made = claim_round(session, wanted, later)
            assert list(made) == [fifth]
        else:
            taken = take_back_keys(session, [k for k in chosen if k != fifth], later)
        assert {v[0]: v[1] for v in taken.values()} == {by_key: 1}
        assert take_back_ready(session, [by_id], later) == {by_id}
    with session_scope(settings.database_url) as session:
        got = {
            r.id: (r.status, r.retry_at, r.updated_at, r.crashes)
            for r in session.scalars(select(Delivery).where(Delivery.id.in_(ids[:4])))
        }
    assert got[by_key] == got[by_id] == (CLAIMED, later, later, 1)
    assert got[ids[2]][0] == RETRY and got[ids[3]][0] == SENT
