"""The editor's files on disk: staging folders in schedules/, durable renames and their leftovers."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import shutil
import time
from pathlib import Path

STAGE_PREFIX = ".editor-"  # staging folders in schedules/ (skipped by the loader)
LEFTOVER_AGE = dt.timedelta(hours=1)  # a staging folder this old was left by a crash


def clear_leftovers(root: Path) -> None:
    """Remove staging folders a crashed save left behind (older than LEFTOVER_AGE by the file
    clock: a save in progress elsewhere is seconds old). The loader skips them anyway."""
    cutoff = time.time() - LEFTOVER_AGE.total_seconds()
    for leftover in root.glob(f"{STAGE_PREFIX}*"):
        with contextlib.suppress(OSError):
            if leftover.is_dir() and leftover.stat().st_mtime < cutoff:
                shutil.rmtree(leftover)


def replace_durably(source: Path, target: Path) -> None:
    """`source` flushed to disk, then renamed over `target` (atomic)."""
    with open(source, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(source, target)


def fsync_dir(folder: Path) -> None:
    """The folder's entries (the renames into it) flushed to disk."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
