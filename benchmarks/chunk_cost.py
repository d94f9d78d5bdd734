"""One chunk's cost as counts: SQL statements and this thread's CPU per 1,000-recipient chunk.

Run through pytest (it borrows the tests' fixtures: a fresh database, Redis prefix and the
SendGrid stand-in) from the repository root:

    PYTHONPATH=.:tests .venv/bin/python -m pytest benchmarks/chunk_cost.py -p conftest -q -s
    TEST_DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:5432/test \\
        PYTHONPATH=.:tests .venv/bin/python -m pytest benchmarks/chunk_cost.py -p conftest -q -s

`NL_CHUNK_PROFILE=1` adds a cProfile of send_chunk (sorted by own time). Thread CPU
(`time.thread_time`) leaves out the stand-in's server thread and the database server; on a
shared machine it is noisy, the statement counts are not.

On PostgreSQL it also prints the server's side: the CPU of the backends our connections used
(psutil on each `pg_backend_pid()`, the server on the same machine), the WAL the run wrote, and
from pg_stat_user_tables the heap tuples written per recipient in `deliveries` and `enrollments`
(inserts + updates, and how many updates were HOT: a non-HOT update adds an entry to every
index whose predicate the new tuple matches), and the backend's CPU per statement (from
/proc/<pid>/schedstat, nanoseconds, read around each statement; commits are not statements).
"""

from __future__ import annotations

import cProfile
import gc
import io
import os
import pstats
import time
from collections import Counter
from typing import Any

from scale_support import BATCH, BATCH_SLOT, batch_readers, statements
from sqlalchemy import event, text

from newsletter.engine.plan import plan as plan_due
from newsletter.engine.send import send_chunk
from newsletter.store.db import get_engine

CHUNKS = 5


def test_chunk_cost(sg: Any) -> None:
    settings, _ = sg
    batch_readers(settings, CHUNKS * BATCH)
    # as a worker's pool process does after start-up (tasks.py): what was built before the
    # burst is out of the collector's way, so a full collection walks only the burst's objects
    # (in this process pytest's own objects made one gen-2 collection ~25 ms a chunk)
    gc.collect()
    gc.freeze()
    server = (
        _Server(settings.database_url) if settings.database_url.startswith("postgres") else None
    )
    plan_cpu = send_cpu = 0.0
    plan_sql = send_sql = 0
    profile = cProfile.Profile()
    for _ in range(CHUNKS):
        started = time.thread_time()
        with statements(settings) as planned:
            (chunk,) = plan_due(settings, BATCH_SLOT).chunks
        plan_cpu += time.thread_time() - started
        started = time.thread_time()
        if os.environ.get("NL_CHUNK_PROFILE"):
            profile.enable()
        with statements(settings) as sent:
            assert send_chunk(settings, chunk, BATCH_SLOT).sent == BATCH
        profile.disable()
        send_cpu += time.thread_time() - started
        plan_sql, send_sql = plan_sql + len(planned), send_sql + len(sent)
    kind = settings.database_url.split("+")[0].split(":")[0]
    print(
        f"\n{kind}: per 1,000-recipient chunk, plan {plan_sql / CHUNKS:.1f} statements"
        f" {plan_cpu / CHUNKS * 1000:.1f} ms CPU, send_chunk {send_sql / CHUNKS:.1f} statements"
        f" {send_cpu / CHUNKS * 1000:.1f} ms CPU (load average {os.getloadavg()[0]:.1f})"
    )
    if server is not None:
        print(server.report(CHUNKS * BATCH))
    if os.environ.get("NL_CHUNK_PROFILE"):
        out = io.StringIO()
        pstats.Stats(profile, stream=out).sort_stats("tottime").print_stats(25)
        print(out.getvalue())
    gc.unfreeze()


_TUPLES = (
    "SELECT relname, n_tup_ins, n_tup_upd, n_tup_hot_upd, pg_relation_size(relid),"
    " pg_indexes_size(relid) FROM pg_stat_user_tables"
    " WHERE relname IN ('deliveries', 'enrollments')"
)
_INDEXES = (
    "SELECT indexrelname, pg_relation_size(indexrelid) FROM pg_stat_user_indexes"
    " WHERE relname = 'deliveries' ORDER BY indexrelname"
)


class _Server:
    """PostgreSQL's own work during the run: backend CPU, WAL bytes, heap tuples written."""

    def __init__(self, url: str) -> None:
        import psutil

        self.engine = get_engine(url)
        self.pids: set[int] = set()
        self.split: Counter[str] = Counter()
        self.engine.dispose()  # every connection from here on is seen by `connect`
        time.sleep(0.5)  # the closed backends flush their statistics before the reset
        event.listen(self.engine, "connect", self._seen)
        event.listen(self.engine, "before_cursor_execute", self._before)
        event.listen(self.engine, "after_cursor_execute", self._after)
        with self.engine.connect() as conn:
            conn.execute(text("SELECT pg_stat_reset()"))
            self.wal = conn.execute(text("SELECT pg_current_wal_lsn()")).scalar_one()
        self.psutil = psutil
        self.cpu = {p: self._cpu(p) for p in self.pids}

    def _seen(self, dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        cur.execute("SELECT pg_backend_pid()")
        self.pids.add(cur.fetchone()[0])
        cur.close()

    @staticmethod
    def _ns(pid: int) -> int:
        with open(f"/proc/{pid}/schedstat") as f:
            return int(f.read().split()[0])

    def _before(self, conn: Any, *_args: Any) -> None:
        pid = conn.connection.dbapi_connection.info.backend_pid
        conn.info["chunk_cost"] = (pid, self._ns(pid))

    def _after(self, conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        pid, started = conn.info.pop("chunk_cost")
        self.split[" ".join(statement.split())[:80]] += self._ns(pid) - started

    def _cpu(self, pid: int) -> float:
        t = self.psutil.Process(pid).cpu_times()
        return float(t.user + t.system)

    def report(self, recipients: int) -> str:
        spent = sum(self._cpu(p) - self.cpu.get(p, 0.0) for p in self.pids)
        with self.engine.connect() as conn:
            wal = conn.execute(
                text("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), :w)"), {"w": self.wal}
            ).scalar_one()
        time.sleep(1.5)  # backends flush their table statistics at most once a second
        with self.engine.connect() as conn:
            rows = conn.execute(text(_TUPLES)).all()
            indexes = conn.execute(text(_INDEXES)).all()
        per = 1000 / recipients
        lines = [
            f"postgresql server: {spent * 1000 * per:.1f} ms backend CPU per 1,000"
            f" ({len(self.pids)} backends), WAL {wal / recipients:.0f} bytes per recipient"
        ]
        for name, ins, upd, hot, heap, index in sorted(rows):
            lines.append(
                f"  {name}: per recipient {ins / recipients:.2f} inserts,"
                f" {upd / recipients:.2f} updates ({hot / recipients:.2f} HOT);"
                f" bytes on disk after the run: heap {heap // 1024} kB, indexes {index // 1024} kB"
            )
        lines.append(
            "  deliveries' indexes (kB): " + ", ".join(f"{n} {b // 1024}" for n, b in indexes)
        )
        lines.append("  backend CPU per statement, ms per 1,000:")
        for statement, ns in self.split.most_common(6):
            lines.append(f"    {ns / 1e6 * per:6.2f}  {statement}")
        return "\n".join(lines)
