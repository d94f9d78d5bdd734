"""One chunk's cost as counts: SQL statements and this thread's CPU per 1,000-recipient chunk.

Run through pytest (it borrows the tests' fixtures: a fresh database, Redis prefix and the
SendGrid stand-in) from the repository root:

    PYTHONPATH=.:tests .venv/bin/python -m pytest benchmarks/chunk_cost.py -p conftest -q -s
    TEST_DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:5432/test \\
        PYTHONPATH=.:tests .venv/bin/python -m pytest benchmarks/chunk_cost.py -p conftest -q -s

`NL_CHUNK_PROFILE=1` adds a cProfile of send_chunk (sorted by own time). Thread CPU
(`time.thread_time`) leaves out the stand-in's server thread and the database server; on a
shared machine it is noisy, the statement counts are not.
"""

from __future__ import annotations

import cProfile
import gc
import io
import os
import pstats
import time
from typing import Any

from scale_support import BATCH, BATCH_SLOT, batch_readers, statements

from newsletter.engine.plan import plan as plan_due
from newsletter.engine.send import send_chunk

CHUNKS = 5


def test_chunk_cost(sg: Any) -> None:
    settings, _ = sg
    batch_readers(settings, CHUNKS * BATCH)
    # as a worker's pool process does after start-up (tasks.py): what was built before the
    # burst is out of the collector's way, so a full collection walks only the burst's objects
    # (in this process pytest's own objects made one gen-2 collection ~25 ms a chunk)
    gc.collect()
    gc.freeze()
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
    if os.environ.get("NL_CHUNK_PROFILE"):
        out = io.StringIO()
        pstats.Stats(profile, stream=out).sort_stats("tottime").print_stats(25)
        print(out.getvalue())
    gc.unfreeze()
