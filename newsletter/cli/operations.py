"""Running it for years: `doctor` (is this deployment ready?), `backup PATH` and `restore PATH`."""

from __future__ import annotations

from pathlib import Path

import typer

from newsletter.cli.common import console, err, fail, server_settings, settings

# Libraries load inside each command, not here, so `newsletter --help` starts fast.

STYLE = {
    "error": "[red]ERROR  [/red]",
    "warning": "[yellow]WARNING[/yellow]",
    "ok": "[green]ok     [/green]",
}


def doctor(
    as_json: bool = typer.Option(False, "--json", help="Print the findings as JSON."),
    check: list[str] = typer.Option(
        [], "--check", help="Run only this check (repeatable), e.g. --check beat."
    ),
) -> None:
    """Check this deployment for production: settings, mail, DNS, Redis, database, beat, workers.

    Every finding says what to do in one line. Exits 1 when any is an error, 0 otherwise
    (warnings are advice).
    """
    import json

    from rich.markup import escape

    from newsletter.services import doctor as doctor_service

    try:  # a mistyped name is refused before the database is opened
        wanted = doctor_service.known(check)
    except KeyError as exc:
        raise fail(str(exc.args[0]), code=2) from None
    # the effective settings: what the pages and the worker read (saved values, environment wins)
    report = doctor_service.run(doctor_service.Context(settings()), wanted)
    if as_json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        for finding in report.findings:
            console.print(
                f"{STYLE[finding.level]} {finding.check:<11} {escape(finding.message)}",
                highlight=False,
                soft_wrap=True,
            )
        errors, warnings = report.count("error"), report.count("warning")
        verdict = "ready" if report.ok else "not ready"
        console.print(f"{verdict}: {errors} error(s), {warnings} warning(s)", highlight=False)
    if not report.ok:
        raise typer.Exit(1)


def backup(
    path: Path = typer.Argument(..., help="Where to write the backup (a new file)."),
    force: bool = typer.Option(False, "--force", help="Overwrite PATH if it exists."),
) -> None:
    """Copy the database to PATH while everything runs (SQLite: online backup; PostgreSQL:
    pg_dump, whose command is printed). Back up schedules/ and the secret key too (README)."""
    from newsletter.store import backup as store_backup

    s = server_settings()
    if path.exists() and not force:
        raise fail(f"{path} exists: choose a new file name (or --force to overwrite it)")
    try:
        done = store_backup.backup(s.database_url, path, announce=_announce)
    except store_backup.BackupError as exc:
        raise fail(str(exc)) from None
    console.print(done, highlight=False, soft_wrap=True)


def restore(
    path: Path = typer.Argument(..., help="A file written by `newsletter backup`."),
) -> None:
    """Restore a backup into an EMPTY database (a new SQLite file or a new PostgreSQL database),
    then run `newsletter init` to upgrade it to this version and sync schedules/."""
    from newsletter.store import backup as store_backup

    s = server_settings()
    try:
        done = store_backup.restore(s.database_url, path, announce=_announce)
    except store_backup.BackupError as exc:
        raise fail(str(exc)) from None
    console.print(done, highlight=False, soft_wrap=True)
    console.print(
        "next: `newsletter init` (upgrades the schema if needed), then start the processes; "
        "Redis rebuilds itself from the database",
        highlight=False,
        soft_wrap=True,
    )


def register(app: typer.Typer) -> None:
    """Add `doctor`, `backup` and `restore` to the top-level commands."""
    app.command()(doctor)
    app.command()(backup)
    app.command()(restore)


def _announce(line: str) -> None:
    err.print(line, highlight=False, markup=False)
