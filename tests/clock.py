"""The test clock: run the whole suite as if it were another moment.

    pytest --clock=2026-12-01T14:01:00Z            # a Tuesday, 09:01 in New York
    NEWSLETTER_TEST_CLOCK=2027-03-14T06:30:00Z make test

With a clock set, this process reads that instant when the session starts and real time passes
from there on (time-machine, `tick=True`): leases, timeouts and sleeps keep working. The clock is
exported as an offset from the real clock to every Python subprocess a test starts (Celery
workers, the CLI), through `tests/clock_site/sitecustomize.py` on PYTHONPATH, so all processes
agree to within the time it takes to start them. What is not Python keeps the system clock:
Redis, PostgreSQL, Chromium, OpenSSL's certificate checks, file modification times. Code that
compares one of those with Python's clock shows up in such a run (the admin import's clean-up
of uploads did).

A test that depends on "now" passes it in, or moves its own clock with the `time_machine`
fixture (`time_machine.move_to(moment, tick=True)`), on top of the session's clock.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from pathlib import Path

import pytest
import time_machine

ENV = "NEWSLETTER_TEST_CLOCK"
# Read by clock_site/sitecustomize.py in subprocesses. Not NEWSLETTER_*: the `settings` fixture
# clears those.
OFFSET_ENV = "NLTEST_CLOCK_OFFSET_NS"
SITE_DIR = Path(__file__).parent / "clock_site"

_clock_key = pytest.StashKey[dt.datetime]()
_travel: time_machine.travel | None = None
_saved_env: dict[str, str | None] = {}


def _real_time_ns() -> int:
    """The system clock, even inside a process already started on a test clock."""
    if time_machine.escape_hatch.is_travelling():
        return time_machine.escape_hatch.time.time_ns()
    return time.time_ns()


def parse_moment(value: str) -> dt.datetime:
    """An ISO 8601 instant with a zone ('Z' or an offset); a naive one is refused."""
    moment = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise pytest.UsageError(f"{ENV}/--clock needs a zone (Z or +hh:mm): {value!r}")
    return moment.astimezone(dt.UTC)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--clock",
        default=os.environ.get(ENV) or None,
        metavar="ISO_INSTANT",
        help=f"start the clock at this instant and let it tick (default: ${ENV}; unset: real)",
    )


def pytest_configure(config: pytest.Config) -> None:
    global _travel
    value = config.getoption("--clock")
    if not value or _travel is not None:
        return
    moment = parse_moment(value)
    offset_ns = int(moment.timestamp() * 1e9) - _real_time_ns()
    # Subprocesses: the same offset, applied by sitecustomize at their start.
    paths = [str(SITE_DIR), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    for key, new in ((OFFSET_ENV, str(offset_ns)), ("PYTHONPATH", os.pathsep.join(paths))):
        _saved_env[key] = os.environ.get(key)
        os.environ[key] = new
    _travel = time_machine.travel(moment, tick=True)
    _travel.start()
    config.stash[_clock_key] = moment


def pytest_unconfigure(config: pytest.Config) -> None:
    global _travel
    if _travel is None:
        return
    _travel.stop()
    _travel = None
    for key, old in _saved_env.items():
        if old is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = old
    _saved_env.clear()


def pytest_report_header(config: pytest.Config) -> str | None:
    moment = config.stash.get(_clock_key, None)
    if moment is None:
        return None
    return f"clock: started at {moment.isoformat()} (ticking; subprocesses too)"
