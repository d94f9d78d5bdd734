"""What every command shares: the consoles, the settings, failing with an exit code, parsing --now."""

from __future__ import annotations

from typing import Any

import typer
from rich.console import Console

from newsletter.core.config import ConfigError, Settings, get_settings

console = Console()
err = Console(stderr=True, soft_wrap=True)


def settings() -> Settings:
    """The settings, or exit 2 with the one-line message naming the bad variable."""
    try:
        return get_settings()
    except ConfigError as exc:
        err.print(f"[red]configuration error:[/red] {exc}", highlight=False)
        raise typer.Exit(2) from None


def fail(message: str, code: int = 1) -> typer.Exit:
    err.print(f"[red]error:[/red] {message}", highlight=False)
    return typer.Exit(code)


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
