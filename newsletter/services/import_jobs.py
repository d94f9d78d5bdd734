"""Large imports from the admin page in the background, their progress kept in Redis.

A file of more than LARGE_ROWS rows is imported by a thread of the web process (not within the
request, which would hold the browser for a minute at 1M rows); the page then polls a small
status: rows done of the total, rows/s, and when done the same report a small file shows at
once. A thread, not a Celery task: `make run` starts the web app with embedded Redis and
SQLite and no worker, and a worker is not needed for anything an admin does by hand; the thread
streams the file in batches like the CLI (services.importing), so memory stays bounded.

The status lives in one Redis hash under the project's prefix (`<prefix>import:<upload id>`,
kept an hour): counts, times and the report's line numbers and reasons, never an address or a
name. Started once per upload (a second submit finds it running). If the web process stops
mid-import, the batches committed so far stay (each batch is its own transaction) and the
status says it stopped once no batch has finished for STALE_SECONDS.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

from newsletter.core.config import Settings
from newsletter.queue.connection import redis_client
from newsletter.services import importing
from newsletter.services.roster import RosterError

LARGE_ROWS = 2000  # data lines above which the admin page imports in the background
KEEP_SECONDS = 3600
RUNNING, DONE, FAILED = "running", "done", "failed"
log = logging.getLogger(__name__)
STALE_SECONDS = 300  # a running import that has not finished a batch for this long has stopped


def data_lines(path: Path) -> int:
    """Lines after the header (the progress total; blank lines and quoted line breaks make it
    an upper bound of the rows, which the final count replaces)."""
    lines, last = 0, b"\n"
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            lines += chunk.count(b"\n")
            last = chunk[-1:]
    return max(lines + (last != b"\n") - 1, 0)


def is_large(path: Path) -> bool:
    return data_lines(path) > LARGE_ROWS


def _key(settings: Settings, upload_id: str) -> str:
    return f"{settings.redis_prefix}import:{upload_id}"


def start(
    settings: Settings,
    upload_id: str,
    path: Path,
    *,
    confirmed: bool,
    tag_series: Mapping[str, str] | None = None,
) -> bool:
    """Import `path` in a thread (the file is deleted when it ends); False when this upload's
    import was already started (a second click). `tag_series`: her mapping of another tool's
    tags to series (services.import_sources)."""
    client = redis_client(settings)
    key = _key(settings, upload_id)
    if not client.hsetnx(key, "state", RUNNING):
        return False
    started = time.time()
    client.hset(
        key,
        mapping={
            "done": 0,
            "total": data_lines(path),
            "started": started,
            "updated": started,
            "confirmed": int(confirmed),
        },
    )
    client.expire(key, KEEP_SECONDS)
    threading.Thread(
        target=_run,
        args=(settings, upload_id, path, confirmed, dict(tag_series or {})),
        name="import",
        daemon=True,
    ).start()
    return True


def _run(
    settings: Settings, upload_id: str, path: Path, confirmed: bool, tag_series: dict[str, str]
) -> None:
    client = redis_client(settings)
    key = _key(settings, upload_id)

    def progress(rows: int) -> None:
        client.hincrby(key, "done", rows)
        client.hset(key, "updated", time.time())

    report: importing.ImportReport | None = None
    error: str | None = None
    try:
        report = importing.import_csv(
            settings,
            path,
            dry_run=False,
            confirmed=confirmed,
            progress=progress,
            tag_series=tag_series,
        )
    except RosterError as exc:  # the file as a whole (header, encoding): its message says why
        error = f"That file can't be imported: {exc}"
    except Exception as exc:  # the page must learn it stopped
        # the kind of error only: a database error's text can quote the rows (addresses)
        log.error("background import %s stopped: %s", upload_id, type(exc).__name__)
        error = "The import stopped on an error; the rows added before it stay."
    finally:
        # the upload (personal data) is gone before the status says the import ended
        path.unlink(missing_ok=True)
    _finish(settings, upload_id, FAILED if error else DONE, report=report, error=error)


def _finish(
    settings: Settings,
    upload_id: str,
    state: str,
    *,
    report: importing.ImportReport | None = None,
    error: str | None = None,
) -> None:
    fields: dict[str, str | int | float] = {"state": state, "finished": time.time()}
    if report is not None:
        fields["report"] = json.dumps(report.as_dict())
        fields["done"] = fields["total"] = report.rows
    if error is not None:
        fields["error"] = error
    client = redis_client(settings)
    client.hset(_key(settings, upload_id), mapping=cast(dict[Any, Any], fields))
    client.expire(_key(settings, upload_id), KEEP_SECONDS)


SHOWN_PROBLEMS = 500  # bad rows a status carries (the page lists as many; `invalid_count` all)


def status(settings: Settings, upload_id: str, *, whole: bool = False) -> dict[str, Any] | None:
    """The import's progress, None when there is none: state, done, total, rows_per_s,
    seconds, confirmed, and `report` (ImportReport.as_dict) once done or `error` if it failed.
    The report lists the first SHOWN_PROBLEMS bad rows (all with `whole`), `invalid_count`
    says how many there were: a poll of a file of a million bad rows stays small."""
    raw = redis_client(settings).hgetall(_key(settings, upload_id))
    if not raw or "started" not in raw:
        return None
    state = raw["state"]
    started = float(raw["started"])
    end = float(raw.get("finished") or time.time())
    done = int(raw.get("done") or 0)
    answer: dict[str, Any] = {
        "state": state,
        "done": done,
        "total": max(int(raw.get("total") or 0), done),
        "seconds": round(end - started, 1),
        "rows_per_s": round(done / max(end - started, 1e-3)),
        "confirmed": raw.get("confirmed") == "1",
    }
    if state == RUNNING and time.time() - float(raw.get("updated") or started) > STALE_SECONDS:
        # no batch for minutes: the web process stopped (restart, deploy) in the middle
        answer["state"] = FAILED
        answer["error"] = "The import stopped (the web app restarted?); the rows added stay."
    if "report" in raw:
        report = answer["report"] = json.loads(raw["report"])
        answer["invalid_count"] = len(report["invalid"])
        if not whole:
            del report["invalid"][SHOWN_PROBLEMS:]
    if "error" in raw:
        answer["error"] = raw["error"]
    return answer
