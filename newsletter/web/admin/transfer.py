"""Importing subscribers from CSV (check, then import) and exporting everyone.

A file of more than import_jobs.LARGE_ROWS (2,000) rows is imported in the background: the
import button leads to a progress page that polls `/admin/import/<upload>/status` (rows done of
the total, rows/s) and shows the usual report when it is done; smaller files are imported
within the request as before."""

from __future__ import annotations

import os
import re
import secrets
import time
from collections.abc import Iterator
from pathlib import Path as FilePath
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.datastructures import UploadFile

from newsletter.core.config import Settings
from newsletter.core.private_files import create_private, private_folder
from newsletter.core.timing import utcnow
from newsletter.services import export, import_jobs, import_sources, importing, roster, series_admin
from newsletter.store.db import session_scope
from newsletter.web.admin.common import (
    form_of,
    page,
    redirect,
    require_admin,
    require_owner,
    settings_of,
)

_IMPORT_ID = re.compile(r"^[A-Za-z0-9_-]{16,40}$")
protected = APIRouter(prefix="/admin", dependencies=[Depends(require_admin)])


UPLOAD_KEEP_SECONDS = 3600


def _imports_dir(settings: Settings) -> FilePath:
    """Where checked uploads wait for "import"; files left for an hour are deleted (personal data)."""
    path = settings.var_dir / "imports"
    private_folder(path)
    cutoff = time.time() - UPLOAD_KEEP_SECONDS
    for old in path.glob("*.csv"):
        try:
            if old.stat().st_mtime < cutoff:
                old.unlink()
        except FileNotFoundError:
            pass
    return path


def _series_choices(settings: Settings) -> list[series_admin.Choice]:
    """The series a tool's tags can be mapped to in the dry run."""
    with session_scope(settings.database_url) as session:
        return series_admin.choices(session)


def _tag_series(form: Any) -> dict[str, str]:
    """Her mapping of another tool's tags to series, from the dry run's form (a tag left on
    "no series choice" is not mapped)."""
    pairs = zip(form.getlist("tag"), form.getlist("tag_series"), strict=False)
    mapped = {str(tag): str(slug) for tag, slug in pairs if str(slug).strip()}
    return dict(list(mapped.items())[: import_sources.TAGS_MAX])


@protected.get("/import", response_class=HTMLResponse, include_in_schema=False)
def import_page(request: Request) -> Response:
    return page(request, "admin/import.html", {"nav": "import", "report": None, "upload": None})


@protected.post("/import", include_in_schema=False)
async def import_upload(request: Request) -> Response:
    """Step 1: keep the file aside and show the dry-run report."""
    form = await form_of(request)
    settings = settings_of(request)
    upload = form.get("file")
    consented = form.get("consented") == "yes"
    if not isinstance(upload, UploadFile) or not upload.filename:
        return redirect(request, "/admin/import", "Choose a CSV file first.", "error")
    upload_id = secrets.token_urlsafe(18)
    path = _imports_dir(settings) / f"{upload_id}.csv"
    with os.fdopen(create_private(path), "wb") as out:  # 0600: the file holds readers
        while chunk := await upload.read(64 * 1024):
            out.write(chunk)
    # Stamped with our clock, as the clean-up reads it (the file system's may differ: NFS).
    stamp = time.time()
    os.utime(path, (stamp, stamp))
    try:
        report = await run_in_threadpool(
            importing.import_csv, settings, path, dry_run=True, confirmed=consented
        )
    except roster.RosterError as exc:
        path.unlink(missing_ok=True)
        return redirect(request, "/admin/import", f"That file can't be imported: {exc}", "error")
    series = await run_in_threadpool(_series_choices, settings) if report.tags else []
    return page(
        request,
        "admin/import.html",
        {
            "nav": "import",
            "report": report,
            "upload": upload_id,
            "consented": consented,
            "series": series,
        },
    )


@protected.post("/import/{upload_id}", include_in_schema=False)
async def import_run(request: Request, upload_id: str) -> Response:
    """Step 2: import the file checked in step 1."""
    form = await form_of(request)
    settings = settings_of(request)
    if not _IMPORT_ID.match(upload_id):
        raise HTTPException(404, "no such upload")
    path = _imports_dir(settings) / f"{upload_id}.csv"
    if not path.exists():
        return redirect(
            request, "/admin/import", "That upload has gone; please choose the file again.", "error"
        )
    consented = form.get("consented") == "yes"
    tags = _tag_series(form)
    if await run_in_threadpool(import_jobs.is_large, path):
        # started now, or already by a first click: either way its progress page
        await run_in_threadpool(
            import_jobs.start, settings, upload_id, path, confirmed=consented, tag_series=tags
        )
        return redirect(request, f"/admin/import/{upload_id}/progress")
    try:
        report = await run_in_threadpool(
            importing.import_csv,
            settings,
            path,
            dry_run=False,
            confirmed=consented,
            tag_series=tags,
        )
    except roster.RosterError as exc:  # a tag mapped to a series removed meanwhile
        return redirect(request, "/admin/import", f"That file can't be imported: {exc}", "error")
    finally:
        path.unlink(missing_ok=True)
    return page(
        request,
        "admin/import.html",
        {"nav": "import", "report": report, "upload": None, "consented": consented},
    )


def _job_status(request: Request, upload_id: str, *, whole: bool = False) -> dict[str, Any]:
    if not _IMPORT_ID.match(upload_id):
        raise HTTPException(404, "no such import")
    found = import_jobs.status(settings_of(request), upload_id, whole=whole)
    if found is None:
        raise HTTPException(404, "no such import")
    return found


@protected.get("/import/{upload_id}/status", include_in_schema=False)
def import_status(request: Request, upload_id: str) -> Response:
    """A background import's progress for the page to poll: counts and times only, the report
    (line numbers and reasons, no addresses) once done."""
    return JSONResponse(_job_status(request, upload_id), headers={"cache-control": "no-store"})


@protected.get("/import/{upload_id}/progress", response_class=HTMLResponse, include_in_schema=False)
def import_progress(request: Request, upload_id: str) -> Response:
    """A background import: its progress while it runs, then the same report a small file shows."""
    job = _job_status(request, upload_id, whole=True)
    report = importing.ImportReport.from_dict(job["report"]) if "report" in job else None
    return page(
        request,
        "admin/import.html",
        {
            "nav": "import",
            "report": report,
            "upload": None,
            "consented": job["confirmed"],
            "job": job,
            "job_id": upload_id,
        },
    )


def _download(chunks: Iterator[str], media_type: str, extension: str) -> Response:
    """A streamed, uncached attachment named subscribers-<date>.<extension>."""
    stamp = utcnow().strftime("%Y-%m-%d")
    return StreamingResponse(
        (chunk.encode("utf-8") for chunk in chunks),
        media_type=media_type,
        headers={
            "content-disposition": f'attachment; filename="subscribers-{stamp}.{extension}"',
            "cache-control": "no-store",
        },
    )


@protected.get("/export.csv", include_in_schema=False, dependencies=[Depends(require_owner)])
def export_csv(request: Request) -> Response:
    return _download(export.export_csv(settings_of(request)), "text/csv; charset=utf-8", "csv")


@protected.get("/export.json", include_in_schema=False, dependencies=[Depends(require_owner)])
def export_json(request: Request) -> Response:
    return _download(export.export_json(settings_of(request)), "application/json", "json")
