"""Long-running processes: how a worker stops is documented, and compose gives it the time."""

from __future__ import annotations

import re
from pathlib import Path

from typer.testing import CliRunner

from newsletter.cli import app
from newsletter.cli.processes import STOP_GRACE_SECONDS

ROOT = Path(__file__).resolve().parents[2]


def test_worker_help_says_how_a_stop_finishes_the_chunk_in_hand() -> None:
    done = CliRunner().invoke(app, ["worker", "--help"], terminal_width=200)
    assert done.exit_code == 0, done.output
    text = " ".join(done.output.split())
    assert "warm shutdown" in text and "finishes the chunk in hand" in text
    assert f"{STOP_GRACE_SECONDS} s" in text


def test_compose_gives_the_worker_longer_than_the_longest_chunk_to_stop() -> None:
    compose = (ROOT / "docker-compose.yml").read_text()
    worker = compose.split("\n  worker:\n", 1)[1].split("\n  beat:\n", 1)[0]
    grace = re.search(r"stop_grace_period: (\d+)s", worker)
    assert grace is not None, "the worker needs a stop_grace_period"
    # the longest chunk: two SendGrid requests of the 30 s timeout, plus render and record
    assert int(grace.group(1)) >= STOP_GRACE_SECONDS > 2 * 30
