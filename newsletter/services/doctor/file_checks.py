"""Doctor check of file modes: the SQLite database (with -wal/-shm) and the key file in var/ are
not readable by group or others."""

from __future__ import annotations

import stat
from pathlib import Path

from sqlalchemy.engine import make_url

from newsletter.core.private_files import open_to_others
from newsletter.services.doctor.findings import Context, Finding, ok, warning

SQLITE_SIDE_FILES = ("", "-wal", "-shm")


def _private_files(ctx: Context) -> list[tuple[str, Path]]:
    """(what, path) of each file that must be the owner's alone, as configured."""
    files: list[tuple[str, Path]] = []
    url = make_url(ctx.settings.database_url)
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        files += [("the database", Path(url.database + side)) for side in SQLITE_SIDE_FILES]
    files.append(("the secret key file", ctx.settings.var_dir / "secret_key"))
    return files


def file_modes(ctx: Context) -> list[Finding]:
    loose = [(what, path) for what, path in _private_files(ctx) if open_to_others(path)]
    if not loose:
        return [ok("files", "the database and key files are readable by their owner only")]
    return [
        warning(
            "files",
            f"{what} {path} is mode {stat.S_IMODE(path.stat().st_mode):04o}: other accounts on "
            f"this machine can read the readers' data; run `chmod 600 {path}` (newsletter "
            "creates its files 0600)",
        )
        for what, path in loose
    ]
