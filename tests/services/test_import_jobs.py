"""Background imports (services.import_jobs): the status in Redis while it runs and after,
a stopped web process noticed, and polls that stay small."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from newsletter.core.config import Settings
from newsletter.queue.connection import redis_client
from newsletter.services import import_jobs


def _wait(settings: Settings, upload_id: str, **options: Any) -> dict[str, Any]:
    deadline = time.monotonic() + 60  # a wait for the thread, not a speed check
    while True:
        found = import_jobs.status(settings, upload_id, **options)
        assert found is not None
        if found["state"] != import_jobs.RUNNING or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def test_a_poll_carries_the_first_bad_rows_and_their_count(
    settings: Settings, tmp_path: Path
) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("email\n" + "".join(f"bad{i}\n" for i in range(600)) + "ok@example.org\n")
    assert import_jobs.data_lines(path) == 601
    assert import_jobs.start(settings, "bad-rows-upload-00000", path, confirmed=False)
    polled = _wait(settings, "bad-rows-upload-00000")
    assert polled["state"] == import_jobs.DONE and polled["invalid_count"] == 600
    assert len(polled["report"]["invalid"]) == import_jobs.SHOWN_PROBLEMS
    assert polled["report"]["new"] == 1 and polled["done"] == polled["total"] == 601
    whole = import_jobs.status(settings, "bad-rows-upload-00000", whole=True)
    assert whole is not None and len(whole["report"]["invalid"]) == 600
    assert "bad1" not in str(polled)  # reasons and line numbers only, never the cell


def test_an_import_whose_process_stopped_reads_as_stopped(settings: Settings) -> None:
    key = f"{settings.redis_prefix}import:stopped-upload-000000"
    long_ago = time.time() - import_jobs.STALE_SECONDS - 1
    redis_client(settings).hset(
        key,
        mapping={
            "state": "running",
            "done": 5000,
            "total": 9000,
            "started": long_ago,
            "updated": long_ago,
            "confirmed": 1,
        },
    )
    found = import_jobs.status(settings, "stopped-upload-000000")
    assert (
        found is not None and found["state"] == import_jobs.FAILED and "stopped" in found["error"]
    )
    assert import_jobs.status(settings, "never-started-0000000") is None
