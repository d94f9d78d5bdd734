"""tests/clock.py: `--clock` / NEWSLETTER_TEST_CLOCK moves this process and its subprocesses."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import pytest
from clock import OFFSET_ENV, parse_moment

HERE = Path(__file__).parent
MOMENT = dt.datetime(2026, 12, 1, 14, 1, tzinfo=dt.UTC)  # a Tuesday, 09:01 in New York

INNER = """
import datetime as dt
import subprocess
import sys
import time

MOMENT = dt.datetime(2026, 12, 1, 14, 1, tzinfo=dt.UTC)
CHILD = "import datetime as dt; print(dt.datetime.now(dt.UTC).isoformat())"


def within_the_hour(moment: dt.datetime) -> bool:
    return MOMENT <= moment < MOMENT + dt.timedelta(hours=1)


def test_this_process_reads_the_test_clock_and_it_ticks() -> None:
    first = dt.datetime.now(dt.UTC)
    assert within_the_hour(first), first
    assert within_the_hour(dt.datetime.fromtimestamp(time.time(), dt.UTC))
    time.sleep(0.01)
    assert dt.datetime.now(dt.UTC) > first  # ticking, not frozen


def test_a_python_subprocess_reads_the_same_clock() -> None:
    out = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, check=True)
    assert within_the_hour(dt.datetime.fromisoformat(out.stdout.strip())), out
"""


def run_inner(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> str:
    (tmp_path / "test_inner.py").write_text(INNER)
    environ = {**os.environ, **(env or {})}
    environ.pop(OFFSET_ENV, None)  # this run's own test clock, if any, is not the inner run's
    environ["PYTHONPATH"] = str(HERE)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "clock", "-p", "no:cacheprovider", *args],
        cwd=tmp_path,
        env=environ,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return f"exit {result.returncode}\n{result.stdout}{result.stderr}"


@pytest.mark.slow  # a whole pytest run in a child process
def test_option_sets_the_clock_here_and_in_subprocesses(tmp_path: Path) -> None:
    out = run_inner(tmp_path, "--clock=2026-12-01T14:01:00Z", "test_inner.py")
    assert out.startswith("exit 0"), out
    assert "clock: started at 2026-12-01T14:01:00+00:00" in out and "2 passed" in out


@pytest.mark.slow  # a whole pytest run in a child process
def test_env_variable_sets_the_clock(tmp_path: Path) -> None:
    out = run_inner(
        tmp_path, "test_inner.py", env={"NEWSLETTER_TEST_CLOCK": "2026-12-01T09:01-05:00"}
    )
    assert out.startswith("exit 0"), out


@pytest.mark.slow  # a whole pytest run in a child process
def test_without_a_clock_the_inner_tests_fail(tmp_path: Path) -> None:
    """The inner tests can fail: on the real clock (not that hour) they do."""
    out = run_inner(tmp_path, "test_inner.py", env={"NEWSLETTER_TEST_CLOCK": ""})
    assert out.startswith("exit 1") and "2 failed" in out, out


@pytest.mark.slow  # a whole pytest run in a child process
def test_a_moment_without_a_zone_is_refused(tmp_path: Path) -> None:
    out = run_inner(tmp_path, "--clock=2026-12-01T14:01:00", "test_inner.py")
    assert out.startswith("exit 4") and "needs a zone" in out, out
    assert parse_moment("2026-12-01T09:01:00-05:00") == MOMENT
