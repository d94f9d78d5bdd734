"""Benchmark floors: what the database alone (a scratch table shaped like the ledger) and the
provider call alone (the official client to the stand-in) cost, and the query plans of the hot
statements; dispatch.py prints its figures beside them.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import CpuSampler


def ledger_floor(db_url: str, rows: int) -> dict[str, float]:
    """The database alone, on a scratch table shaped like the ledger (same unique key and status
    index): the raw bulk load rate (COPY on PostgreSQL, executemany on SQLite), then the writes
    dispatch sends per chunk of 1,000, each in its own transaction as in the real path: the
    claim INSERT … ON CONFLICT DO NOTHING RETURNING, the hand-over compare-and-set UPDATE and
    the sent UPDATE. The real path also moves each enrollment on (one more UPDATE of the sent
    UPDATE's shape), so per recipient: 1 insert + 1 compare-and-set + 2 updates."""
    from sqlalchemy import text

    from newsletter.store.db import get_engine

    engine = get_engine(db_url)
    pg = engine.dialect.name == "postgresql"
    ddl = [
        "DROP TABLE IF EXISTS bench_floor",
        "CREATE TABLE bench_floor (id " + ("serial" if pg else "integer") + " PRIMARY KEY,"
        " subscriber_id integer, series_id integer, part_number integer, status varchar(16),"
        " scheduled_for timestamp, sent_at timestamp, provider_message_id varchar(200),"
        " attempts integer, retry_at timestamp, last_error text, created_at timestamp,"
        " updated_at timestamp, UNIQUE (subscriber_id, series_id, part_number))",
        "CREATE INDEX bench_floor_status ON bench_floor (status, updated_at)",
    ]
    with engine.begin() as conn:
        for stmt in ddl:
            conn.exec_driver_sql(stmt)
    now = dt.datetime(2027, 1, 1)
    out: dict[str, float] = {"rows": rows}
    t0 = time.perf_counter()
    if pg:
        raw = engine.raw_connection()
        try:
            cur = raw.cursor()
            with cur.copy(  # type: ignore[attr-defined]
                "COPY bench_floor (subscriber_id, series_id, part_number, status, scheduled_for,"
                " attempts, retry_at, created_at, updated_at) FROM STDIN"
            ) as copy:
                for i in range(rows):
                    copy.write_row((i, 2, 1, "claimed", now, 0, now, now, now))
            raw.commit()
        finally:
            raw.close()
    else:
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO bench_floor (subscriber_id, series_id, part_number, status,"
                    " scheduled_for, attempts, retry_at, created_at, updated_at)"
                    " VALUES (:s, 2, 1, 'claimed', :n, 0, :n, :n, :n)"
                ),
                [{"s": i, "n": now} for i in range(rows)],
            )
    out["bulk_load_rows_per_s"] = rows / (time.perf_counter() - t0)
    claim_pg = text(
        "INSERT INTO bench_floor (subscriber_id, series_id, part_number, status, scheduled_for,"
        " attempts, retry_at, created_at, updated_at)"
        " SELECT t.s, 1, 1, 'claimed', :now, 0, :now, :now, :now"
        " FROM unnest(CAST(:s AS integer[])) AS t(s)"
        " ON CONFLICT (subscriber_id, series_id, part_number) DO NOTHING RETURNING id"
    )
    from sqlalchemy import MetaData, Table
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    table = Table("bench_floor", MetaData(), autoload_with=engine)
    # as dispatch does on SQLite: one executemany (insertmanyvalues) with RETURNING
    claim_lite = (
        sqlite_insert(table)
        .on_conflict_do_nothing(index_elements=["subscriber_id", "series_id", "part_number"])
        .returning(table.c.id)
    )

    def claim_row(p: int) -> dict[str, Any]:
        return {
            "subscriber_id": p,
            "series_id": 1,
            "part_number": 1,
            "status": "claimed",
            "scheduled_for": now,
            "attempts": 0,
            "retry_at": now,
            "created_at": now,
            "updated_at": now,
        }

    sent_pg = text(
        "UPDATE bench_floor SET status = 'sent', provider_message_id = t.m, sent_at = :now,"
        " retry_at = NULL, updated_at = :now"
        " FROM unnest(CAST(:ids AS integer[]), CAST(:mids AS varchar[])) AS t(i, m)"
        " WHERE bench_floor.id = t.i"
    )
    sent_lite = text(
        "UPDATE bench_floor SET status = 'sent', provider_message_id = :m, sent_at = :now,"
        " retry_at = NULL, updated_at = :now WHERE id = :i"
    )
    cas_pg = text(
        "UPDATE bench_floor SET attempts = attempts + 1, retry_at = NULL, updated_at = :now"
        " WHERE id = ANY(CAST(:ids AS integer[])) AND coalesce(status, '') = 'claimed'"
        " AND retry_at IS NOT NULL RETURNING id"
    )
    cas_lite = text(
        "UPDATE bench_floor SET attempts = attempts + 1, retry_at = NULL, updated_at = :now"
        " WHERE id IN (SELECT value FROM json_each(:ids)) AND coalesce(status, '') = 'claimed'"
        " AND retry_at IS NOT NULL RETURNING id"
    )
    insert_s = cas_s = update_s = 0.0
    for base in range(0, rows, 1000):
        people = list(range(base, min(rows, base + 1000)))
        t1 = time.perf_counter()
        with engine.begin() as conn:
            if pg:
                ids = list(conn.execute(claim_pg, {"s": people, "now": now}).scalars())
            else:
                ids = list(conn.execute(claim_lite, [claim_row(p) for p in people]).scalars())
        t_cas = time.perf_counter()
        with engine.begin() as conn:
            if pg:
                handed = list(conn.execute(cas_pg, {"ids": ids, "now": now}).scalars())
            else:
                handed = list(
                    conn.execute(cas_lite, {"ids": json.dumps(ids), "now": now}).scalars()
                )
        assert len(handed) == len(ids)
        cas_s += time.perf_counter() - t_cas
        t2 = time.perf_counter()
        with engine.begin() as conn:
            if pg:
                conn.execute(sent_pg, {"ids": ids, "mids": ["x" * 22] * len(ids), "now": now})
            else:
                conn.execute(sent_lite, [{"i": i, "m": "x" * 22, "now": now} for i in ids])
        update_s += time.perf_counter() - t2
        insert_s += t_cas - t1
    with engine.connect() as conn:
        done = conn.exec_driver_sql("SELECT count(*) FROM bench_floor WHERE status = 'sent'")
        assert done.scalar() == rows  # every claimed row came back and was updated
    out["claim_insert_rows_per_s"] = rows / insert_s
    out["cas_update_rows_per_s"] = rows / cas_s
    out["sent_update_rows_per_s"] = rows / update_s
    # per recipient: claim insert, compare-and-set, sent update, enrollment update
    out["ledger_floor_rows_per_s"] = 1 / (
        1 / out["claim_insert_rows_per_s"]
        + 1 / out["cas_update_rows_per_s"]
        + 2 / out["sent_update_rows_per_s"]
    )
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE bench_floor")
    return out


def provider_floor(sink_pid: int, rounds: int = 20) -> dict[str, float]:
    """The provider call alone, no database: what handing 1,000 recipients to the official
    client costs at least. Per round: two signed links and the placeholder values per
    recipient (mail.recipient, as send_chunk does), the request body
    (SendGridBackend.build_body), the official client's JSON encoding and POST to the sink.
    CPU of this process and of the sink, per 1,000."""
    from newsletter.content import series as content
    from newsletter.core.config import get_settings
    from newsletter.mail import render
    from newsletter.mail.backends.sendgrid import SendGridBackend
    from newsletter.mail.recipient import recipient

    settings = get_settings()
    spec = content.load_all(settings.schedules_dir)[0]
    message = render.Renderer(settings).article(spec, spec.parts[0], len(spec.parts))
    backend = SendGridBackend(settings)
    base = backend.base_body(message)
    sink_cpu = CpuSampler("\0", [sink_pid]).start()
    cpu0, t0 = time.process_time(), time.perf_counter()
    for r in range(rounds):
        recipients = [
            recipient(
                settings,
                10_000_000 + r * 1000 + i,
                f"floor{r:04d}{i:06d}xxxxxxxxxxxxx",
                f"floor{r}x{i}@example.org",
                f"Reader {i}" if i % 3 else None,
            )
            for i in range(1000)
        ]
        status, _ = backend._post(backend.build_body(message, recipients, base))
        assert status == 202, status
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - t0
    return {
        "rounds": rounds,
        "client_cpu_ms_per_1k": 1000 * cpu / rounds,
        "sink_cpu_ms_per_1k": 1000 * sink_cpu.stop()["sink"] / rounds,
        "wall_ms_per_1k": 1000 * wall / rounds,
    }


def explain(db_url: str) -> dict[str, str]:
    """EXPLAIN of the hot queries (claimed ids -> enrollments; chunk ids -> ledger rows)."""

    from newsletter.store.db import get_engine

    engine = get_engine(db_url)
    pg = engine.dialect.name == "postgresql"
    prefix = "EXPLAIN " if pg else "EXPLAIN QUERY PLAN "
    ids = ",".join(str(i) for i in range(1, 1001))
    # a retry chunk's ids: the ledger's first 1,000 (the range clause as _id_range writes it)
    retake = (
        "UPDATE deliveries SET status = 'claimed', retry_at = updated_at, updated_at = updated_at"
        f" WHERE deliveries.id IN ({ids}) AND coalesce(deliveries.status, '') = 'retry'"
        " RETURNING deliveries.id"
    )
    retake_range = retake.replace(
        " AND coalesce(", " AND deliveries.id BETWEEN 1 AND 1000 AND coalesce("
    )
    queries = {
        "plan: enrollments by claimed id": (
            "SELECT enrollments.*, (SELECT status FROM subscribers"
            " WHERE subscribers.id = enrollments.subscriber_id)"
            f" FROM enrollments WHERE enrollments.id IN ({ids})"
        ),
        "send_chunk: ledger rows of a chunk": (
            "SELECT * FROM deliveries JOIN subscribers ON subscribers.id = deliveries.subscriber_id "
            "JOIN enrollments ON enrollments.subscriber_id = deliveries.subscriber_id "
            "AND enrollments.series_id = deliveries.series_id "
            f"WHERE deliveries.id IN ({ids}) AND deliveries.id BETWEEN 1 AND 1000"
        ),
        "send_chunk: compare-and-set": (
            "UPDATE deliveries SET attempts = attempts + 1, retry_at = NULL"
            f" WHERE deliveries.id IN ({ids}) AND deliveries.id BETWEEN 1 AND 1000"
            " AND coalesce(deliveries.status, '') = 'claimed'"
            " AND deliveries.retry_at IS NOT NULL RETURNING deliveries.id"
        ),
        "send_chunk: subscribers re-read after the provider call": (
            f"SELECT * FROM subscribers WHERE subscribers.id IN ({ids})"
        ),
        "send_chunk: suppression check": (
            "SELECT email_hash FROM suppressions WHERE email_hash IN ('a', 'b')"
        ),
        "retry tick: ledger rows of conflicting claims": (
            "SELECT id, subscriber_id, series_id, part_number, status, retry_at, scheduled_for"
            f" FROM deliveries WHERE subscriber_id IN ({ids}) AND series_id IN (1)"
            " AND part_number IN (2)"
        ),
        "retry tick: retry -> claimed compare-and-set": retake,
        "retry tick: the same with the chunk's id range (as send_chunk's)": retake_range,
    }
    out = {}
    with engine.connect() as conn:
        for name, sql in queries.items():
            rows = conn.exec_driver_sql(prefix + sql).all()
            text = " | ".join(str(r[-1]).strip() for r in rows)
            out[name] = re.sub(r"'\{1,2,3,[0-9,]*\}'", "'{…1000 ids}'", text)
        if pg:  # run both (rolled back): what the plan costs on this ledger, per chunk
            total = conn.exec_driver_sql("SELECT count(*) FROM deliveries").scalar()
            for name, sql in (("without", retake), ("with", retake_range)):
                with engine.connect() as scratch:  # closed without a commit: rolled back
                    rows = scratch.exec_driver_sql("EXPLAIN (ANALYZE, COSTS OFF) " + sql).all()
                    scratch.rollback()
                took = [str(r[0]) for r in rows if str(r[0]).startswith("Execution Time")]
                out[f"retry tick: compare-and-set {name} the id range, run on {total:,} rows"] = (
                    took[0] if took else "?"
                )
    return out
