"""A correction mailed to everyone who had a part: provider requests, SQL statements and this
thread's CPU for N readers (the web request's work when she ticks "send it to them").

Run through pytest (it borrows the tests' fixtures: a fresh database, Redis prefix and the
SendGrid stand-in) from the repository root; N defaults to 2,000 (`NL_CORRECTION_READERS`):

    PYTHONPATH=.:tests .venv/bin/python -m pytest benchmarks/correction_cost.py -p conftest -q -s
    TEST_DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:5432/test \\
        PYTHONPATH=.:tests .venv/bin/python -m pytest benchmarks/correction_cost.py -p conftest -q -s
"""

from __future__ import annotations

import os
import time
from typing import Any

from scale_support import BATCH_SLOT, batch_readers, delivery_statuses, statements

from newsletter.engine.tick import tick
from newsletter.services import corrections

MYTHS = "myths-about-psychotherapy"


def test_correction_cost(sg: Any, tmp_path: Any, monkeypatch: Any) -> None:
    import shutil

    settings, fake = sg
    folder = tmp_path / "schedules"
    shutil.copytree(settings.schedules_dir, folder)
    monkeypatch.setenv("NEWSLETTER_SCHEDULES_DIR", str(folder))
    settings = settings.model_copy(update={"schedules_dir": str(folder)})
    n = int(os.environ.get("NL_CORRECTION_READERS", "2000"))
    batch_readers(settings, n)
    tick(settings, BATCH_SLOT)
    assert delivery_statuses(settings).get("sent") == n
    before = len(fake.requests)
    form = corrections.open_part(settings, MYTHS, 1)
    assert form is not None
    at = BATCH_SLOT.replace(hour=12)
    started, wall = time.thread_time(), time.perf_counter()
    with statements(settings) as seen:
        done = corrections.correct(
            settings, MYTHS, 1, title=form.title, summary=form.summary,
            body=f"{form.body}\n\nA typo fixed.", token=form.token, send=True, key="k1", now=at,
        )  # fmt: skip
    cpu, wall = time.thread_time() - started, time.perf_counter() - wall
    requests = len(fake.requests) - before
    assert done.sent == n
    print(
        f"\n{settings.database_url.split(':')[0]}: a correction to {n:,} readers: "
        f"{requests} provider requests, {len(seen)} SQL statements, "
        f"{cpu:.2f} s thread CPU, {wall:.2f} s wall (load average {os.getloadavg()[0]:.1f})"
    )
