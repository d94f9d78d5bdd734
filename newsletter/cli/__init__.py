"""The `newsletter` command line: one module per command group, registered here in help order."""

from __future__ import annotations

import sys
from typing import Any

import typer

from newsletter.cli import (
    admin,
    broadcast,
    operations,
    processes,
    sending,
    series,
    setup,
    subscribers,
)
from newsletter.cli.common import GROUP, end_now, ending_quickly, err

app = typer.Typer(**GROUP, add_completion=False, help="Newsletter and series scheduler.")
app.add_typer(series.app, name="series")
app.add_typer(subscribers.app, name="subscribers")
app.add_typer(sending.queue_app, name="queue")
app.add_typer(admin.app, name="admin")
app.add_typer(broadcast.app, name="broadcast")

# The top-level commands, in the order `newsletter --help` lists them.
app.command()(setup.init)
app.command()(sending.tick)
app.command()(sending.reconcile)
app.command()(processes.worker)
app.command()(processes.beat)
app.command()(processes.web)
app.command()(processes.run)
app.command("send-test")(sending.send_test)
operations.register(app)  # doctor, backup, restore


def run() -> Any:
    """The command line, returning the code it exits with (SystemExit's) instead of exiting:
    `main` runs it, and so does the chaos tests' wrapper, which checks its faults afterwards."""
    try:
        app()
    except SystemExit as exc:
        return exc.code
    except Exception as exc:
        from newsletter.core.config import ConfigError  # not at start: see cli/common.py

        if not isinstance(exc, ConfigError):
            raise
        # settings read lazily deep inside a command
        err.print(f"[red]configuration error:[/red] {exc}", highlight=False)
        return 2
    return 0


def main() -> None:
    """`newsletter`: run the command, then exit; at once when it asked to (common.end_quickly)."""
    code = run()
    if ending_quickly():
        end_now(code)
    sys.exit(code)
