"""Private files: what holds readers' data or the key is created 0600 in folders created 0700.

Whatever the umask: each file is created by `os.open` with O_CREAT|O_EXCL and mode 0600, then
`fchmod`-ed on its own descriptor (a umask can only take bits away; 0600 even under 0277), so
there is no moment when another account could open it. A file written in place of an old one is
written beside it and renamed over it. Folders we create (each missing level) are 0700; folders
that already exist are left as they are (`/tmp`, a backup disk).
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

FILE_MODE = 0o600
FOLDER_MODE = 0o700
OTHERS = stat.S_IRWXG | stat.S_IRWXO  # any bit for group or others: readable beyond its owner


def private_folder(path: Path) -> Path:
    """Create `path` and each missing folder above it 0700; existing folders are untouched."""
    path = Path(path)
    missing: list[Path] = []
    for folder in (path, *path.parents):
        if folder.exists():
            break
        missing.append(folder)
    for folder in reversed(missing):
        with contextlib.suppress(FileExistsError):  # made meanwhile by another process
            folder.mkdir(mode=FOLDER_MODE)
            os.chmod(folder, FOLDER_MODE)  # not yet holding anything: the umask may have cut it
    return path


def create_private(path: Path) -> int:
    """A new file at `path` (FileExistsError if there is one), 0600, open for writing: its fd."""
    path = Path(path)
    private_folder(path.parent)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(path, flags, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)
    except BaseException:
        os.close(fd)
        raise
    return fd


def touch_private(path: Path) -> None:
    """An empty 0600 file at `path` unless one is there (SQLite and pg_dump then write into it,
    keeping its mode)."""
    with contextlib.suppress(FileExistsError):
        os.close(create_private(path))


@contextlib.contextmanager
def write_private(path: Path, mode: str = "w", **options: Any) -> Iterator[IO[Any]]:
    """Write `path` as a new 0600 file: written beside it, renamed over it when whole (a file
    that was there, whatever its mode, is replaced, never reopened). `mode` "w" or "wb";
    `options` go to `open` (encoding, newline)."""
    path = Path(path)
    partial = path.with_name(f".{path.name}.partial")
    partial.unlink(missing_ok=True)
    handle = os.fdopen(create_private(partial), mode, **options)
    try:
        with handle:
            yield handle
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def tighten(path: Path) -> bool:
    """Make an existing file of ours 0600 when group or others have any bit; True when changed.
    Files owned by another account are left alone (chmod would fail; the owner decides)."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return False
    if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid():
        return False
    if not info.st_mode & OTHERS:
        return False
    os.chmod(path, FILE_MODE)
    return True


def open_to_others(path: Path) -> bool:
    """True when group or others may read or write the file at `path` (False when missing)."""
    try:
        return bool(os.stat(path).st_mode & OTHERS)
    except FileNotFoundError:
        return False
