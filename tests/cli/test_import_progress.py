"""`newsletter subscribers import` shows a progress bar with rows and rows/s on a terminal only."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import func, select

from newsletter.core.config import Settings
from newsletter.store.db import session_scope, upgrade
from newsletter.store.models import Subscriber

ROWS = 12_000  # three batches


def _file(tmp_path: Path) -> Path:
    path = tmp_path / "people.csv"
    path.write_text("email,name\n" + "".join(f"p{i}@example.org,P {i}\n" for i in range(ROWS)))
    return path


def _count(settings: Settings) -> int:
    with session_scope(settings.database_url) as session:
        return int(session.scalar(select(func.count()).select_from(Subscriber)) or 0)


@pytest.mark.slow  # a `newsletter` import in a child process
def test_a_terminal_gets_a_progress_bar_with_rows_per_second(
    settings: Settings, tmp_path: Path
) -> None:
    upgrade(settings.database_url)
    argv = [sys.executable, "-m", "newsletter", "subscribers", "import", str(_file(tmp_path))]
    argv.append("--dry-run")
    leader, follower = pty.openpty()
    env = {**os.environ, "COLUMNS": "120", "TERM": "xterm"}
    proc = subprocess.Popen(argv, stdout=follower, stderr=follower, env=env)
    os.close(follower)
    seen = b""
    while True:
        try:
            data = os.read(leader, 65536)
        except OSError:  # the child closed the terminal
            break
        if not data:
            break
        seen += data
    assert proc.wait(timeout=300) == 0
    os.close(leader)
    text = seen.decode("utf-8", "replace")
    assert "rows/s" in text and "checking" in text
    assert f"{ROWS:,} rows" in text  # the last update: every row counted
    assert "dry run" in text  # then the report


@pytest.mark.slow  # a `newsletter` import in a child process
def test_no_progress_bar_when_stdout_is_not_a_terminal(settings: Settings, tmp_path: Path) -> None:
    upgrade(settings.database_url)
    argv = [sys.executable, "-m", "newsletter", "subscribers", "import", str(_file(tmp_path))]
    run = subprocess.run(
        [*argv, "--confirmed"], capture_output=True, text=True, timeout=600, check=True
    )
    assert "rows/s" not in run.stdout + run.stderr
    assert "import done" in run.stdout
    assert _count(settings) == ROWS
