"""What every command shares: the consoles, the (effective) settings, failing with an exit code, parsing --now."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, NoReturn

import typer

if TYPE_CHECKING:
    from rich.console import Console

    from newsletter.core.config import Settings

# Only typer loads with the command line: every library (settings and pydantic, rich, Typer's
# rich help) loads inside the command that needs it, so `newsletter --help` starts fast
# (tests/cli/test_startup.py checks what `--help` imports). A command group is
# `typer.Typer(**GROUP, help=...)`: plain help, as the top-level command's.
GROUP: dict[str, Any] = {"no_args_is_help": True, "rich_markup_mode": None}


class LazyConsole:
    """A rich Console made when first used (rich loads only when a command prints)."""

    def __init__(self, **options: Any) -> None:
        self._options = options
        self._console: Console | None = None

    @property
    def real(self) -> Console:
        """The Console itself (for rich.progress and the like)."""
        if self._console is None:
            from rich.console import Console

            self._console = Console(**self._options)
        return self._console

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


console = LazyConsole()
err = LazyConsole(stderr=True, soft_wrap=True)


def settings() -> Settings:
    """The effective settings: the environment's with the values saved on the Settings page laid
    over the fields it leaves unset (store.practice.effective_settings), for everything the
    command does (doctor, sending, rendering). Exits 2 naming a bad variable."""
    from newsletter.store.practice import effective_settings

    return effective_settings(server_settings())


def server_settings() -> Settings:
    """The environment's settings alone, for a command that reads no practice value and must not
    open the database first (backup, restore, starting the processes, which make their own
    effective settings per request or task). Exits 2 naming a bad variable."""
    from newsletter.core.config import ConfigError, get_settings

    try:
        return get_settings()
    except ConfigError as exc:
        err.print(f"[red]configuration error:[/red] {exc}", highlight=False)
        raise typer.Exit(2) from None


def fail(message: str, code: int = 1) -> typer.Exit:
    err.print(f"[red]error:[/red] {message}", highlight=False)
    return typer.Exit(code)


# Set by a command that leaves nothing to tidy when it returns (the tick: its sending processes
# joined, its rows recorded): main() then ends the process without the interpreter's teardown,
# which frees every module's objects one by one (0.15-0.3 s of CPU after the tick's last line,
# benchmarks/README.md, round 3c "the inline tick's start-up, exit and senders").
_quick = {"end": False}


def end_quickly() -> None:
    """Ask main() to end this process at once when the command returns (see end_now)."""
    _quick["end"] = True


def ending_quickly() -> bool:
    return _quick["end"]


def end_now(code: Any) -> NoReturn:
    """Exit with SystemExit's `code` without the interpreter's teardown: the atexit handlers run
    (logging, multiprocessing), the pooled database connections are closed, the standard
    streams flushed; then os._exit."""
    import atexit
    import os

    from newsletter.store.db import dispose_all

    if code is None:
        code = 0
    elif not isinstance(code, int):  # sys.exit("message"): printed, status 1, as Python does
        print(code, file=sys.stderr)
        code = 1
    dispose_all()
    atexit._run_exitfuncs()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except OSError:  # a closed pipe: Python's own exit reports it with status 120
        code = code or 120
    os._exit(code)


def print_problems(problems: list[str]) -> None:
    for problem in problems:
        err.print(problem, highlight=False, markup=False)


def parse_now(value: str | None) -> Any:
    import datetime as dt

    if value is None:
        return dt.datetime.now(dt.UTC)
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise fail(f"--now: not an ISO-8601 time: {value!r} (e.g. 2027-03-02T09:00:00Z)") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)
