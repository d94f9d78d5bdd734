"""The `newsletter` command line: wires settings, database, content, queue and delivery together."""

from __future__ import annotations

import sys

import typer
from rich.console import Console

from newsletter.config import ConfigError, Settings, get_settings

app = typer.Typer(
    no_args_is_help=True, add_completion=False, help="Newsletter and series scheduler."
)
series_app = typer.Typer(no_args_is_help=True, help="Series: list, validate, preview, queue.")
subscribers_app = typer.Typer(no_args_is_help=True, help="Subscribers: add, import, export, …")
queue_app = typer.Typer(no_args_is_help=True, help="Queue state in Redis.")
admin_app = typer.Typer(no_args_is_help=True, help="Admin login and API tokens.")
app.add_typer(series_app, name="series")
app.add_typer(subscribers_app, name="subscribers")
app.add_typer(queue_app, name="queue")
app.add_typer(admin_app, name="admin")

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


# --- database and set-up -------------------------------------------------------------------


@app.command()
def init() -> None:
    """Create or upgrade the database and sync series from schedules/."""
    from newsletter import db

    s = settings()
    db.upgrade(s.database_url)
    console.print(f"database ready: {s.database_url}")


# --- series --------------------------------------------------------------------------------


# --- subscribers ---------------------------------------------------------------------------


# --- queue, tick and processes -------------------------------------------------------------


# --- delivery ------------------------------------------------------------------------------


# --- admin ---------------------------------------------------------------------------------


def main() -> None:
    try:
        app()
    except ConfigError as exc:  # settings read lazily deep inside a command
        err.print(f"[red]configuration error:[/red] {exc}", highlight=False)
        sys.exit(2)
