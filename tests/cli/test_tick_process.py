"""`newsletter tick` as a process: what it prints and its exit status survive its quick end (no
interpreter teardown: cli.common.end_now), and it loads no web or worker code."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from engine_support import enrollments, outbox_mails
from sqlalchemy import select
from typer.testing import CliRunner

from newsletter.cli import app
from newsletter.core.config import Settings
from newsletter.queue.dueset import RedisQueue
from newsletter.queue.ticklock import TickLock
from newsletter.store.db import session_scope
from newsletter.store.models import Subscriber

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()

# Run as `python -c PROBE ARGS`: the real entry point (newsletter.cli:main), with an object that
# writes "teardown" to stderr when the interpreter's teardown frees it (os.write: the streams
# may be gone by then), and the modules the command loaded written to the file PROBE_MODULES
# names (not to stdout: its buffer is the command's, whose flush is under test).
PROBE = """
import atexit, json, os, sys
class Probe:
    def __del__(self, write=os.write):
        write(2, b"teardown\\n")
probe = type(sys)("probe")
probe.object = Probe()
sys.modules["probe"] = probe
def modules():
    with open(os.environ["PROBE_MODULES"], "w") as out:
        json.dump(sorted(sys.modules), out)
atexit.register(modules)
sys.argv = ["newsletter", *sys.argv[1:]]
from newsletter.cli import main
main()
"""

# Nothing of the web's or the worker's is needed to send: `tick` must not load them.
NOT_FOR_THE_TICK = ("fastapi", "starlette", "uvicorn", "celery", "kombu", "newsletter.web",
                    "newsletter.tasks", "newsletter.services", "rich")  # fmt: skip


def cli_process(
    tmp: Path, *argv: str, **env: str
) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """`newsletter ARGV` in a new interpreter with this test's NEWSLETTER_* environment; the
    run and the modules it had loaded at its end."""
    listing = tmp / "modules.json"
    listing.unlink(missing_ok=True)
    environment = {**os.environ, "PYTHONPATH": str(ROOT), "PROBE_MODULES": str(listing), **env}
    environment.pop("PYTHONUNBUFFERED", None)  # stdout block-buffered, as under cron
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *argv],
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return done, json.loads(listing.read_text()) if listing.exists() else []


def one_reader_due(settings: Settings) -> dt.datetime:
    for args in (["init"], ["subscribers", "add", "reader@example.org", "--confirmed"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
    with session_scope(settings.database_url) as session:
        sid = session.scalar(select(Subscriber.id))
    assert sid is not None
    due = enrollments(settings, sid)[0].next_due_at
    assert due is not None
    return due


@pytest.mark.slow  # two `newsletter` processes that import the send path
@pytest.mark.parametrize("processes", ["1", "2"])
def test_the_tick_prints_its_summary_and_ends_without_the_teardown(
    settings: Settings, tmp_path: Path, processes: str
) -> None:
    due = one_reader_due(settings)
    done, modules = cli_process(
        tmp_path, "tick", "--now", due.isoformat(), "--json", NEWSLETTER_TICK_PROCESSES=processes
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"due": 1, "sent": 1, "retry": 0, "skipped": 0, "failed": 0}
    assert len(outbox_mails(settings)) == 1
    assert "teardown" not in done.stderr  # ended at once, after its output and atexit handlers
    assert "newsletter.engine.send" in modules  # the list is real
    assert [m for m in modules if m.startswith(NOT_FOR_THE_TICK)] == []

    # the probe sees a teardown where there is one: a command that does not end quickly
    status, _ = cli_process(tmp_path, "queue", "status", "--json")
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["built"] is True
    assert "teardown" in status.stderr


@pytest.mark.slow
def test_a_locked_tick_still_exits_3_with_its_message(settings: Settings, tmp_path: Path) -> None:
    due = one_reader_due(settings)
    queue = RedisQueue(settings)
    with TickLock(queue.redis, queue.lock_key).hold():
        done, _ = cli_process(tmp_path, "tick", "--now", due.isoformat(), "--json")
    assert done.returncode == 3
    assert "another tick holds the lock" in done.stderr
    assert "teardown" not in done.stderr
    assert outbox_mails(settings) == []
