"""`newsletter subscribers ...`: add, import, export, unsubscribe and erase people."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import IO, Any

import typer

from newsletter.cli.common import GROUP, console, err, fail, settings

# Libraries load inside each command, not here, so `newsletter --help` starts fast.

app = typer.Typer(**GROUP, help="Subscribers: add, import, export, …")


@app.command("import")
def subscribers_import(
    file: Path = typer.Argument(
        ...,
        exists=True,
        dir_okay=False,
        help="CSV (email, name, timezone, series, and an export's columns) or a JSON export",
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="Only report what would happen."),
    confirmed: bool = typer.Option(
        False, "--confirmed", help="Consent was given elsewhere: no confirmation email, active now."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    map_tag: list[str] = typer.Option(
        [], "--map-tag", help="TAG=SERIES-SLUG: another tool's tag as a series choice (repeat)."
    ),
) -> None:
    """Import subscribers from a CSV file (UTF-8, comma or semicolon) or a JSON export; a report
    at the end. An export imports back as it was: each row's status, choices and consent. An
    export of Mailchimp, Substack, Kit, Buttondown, MailerLite, Ghost or listmonk is recognised
    by its header (README "Moving from another tool").

    Streamed in batches (any size of file); on a terminal a progress bar shows rows and rows/s."""
    import json
    import time

    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from newsletter.services import importing, roster

    s = settings()
    pairs = [m.partition("=") for m in map_tag]
    if any(not tag.strip() or not eq or not slug.strip() for tag, eq, slug in pairs):
        raise fail("--map-tag takes TAG=SERIES-SLUG")
    tag_series = {tag.strip(): slug.strip() for tag, _, slug in pairs}
    size = file.stat().st_size
    started = time.monotonic()
    rows = 0
    with (
        file.open("rb") as raw,
        Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[rows]:,} rows, {task.fields[rate]:,.0f} rows/s"),
            TimeElapsedColumn(),
            console=err.real,
            disable=as_json or not sys.stdout.isatty(),
            transient=True,
        ) as bar,
    ):
        task = bar.add_task("checking" if dry_run else "importing", total=size, rows=0, rate=0)

        def advance(batch: int) -> None:
            nonlocal rows
            rows += batch
            rate = rows / max(time.monotonic() - started, 1e-6)
            bar.update(task, completed=raw.tell(), rows=rows, rate=rate)

        try:
            report = importing.import_csv(
                s,
                raw,
                dry_run=dry_run,
                confirmed=confirmed,
                progress=advance,
                tag_series=tag_series,
            )
        except roster.RosterError as exc:
            raise fail(str(exc)) from None
    if as_json:
        console.print_json(json.dumps(report.as_dict()))
        return
    _print_import_report(report)


def _print_import_report(report: Any) -> None:
    from rich.table import Table

    from newsletter.services import import_reading

    verb = "would be added" if report.dry_run else "added"
    state = (
        "active (consent given elsewhere)" if report.confirmed else "pending, confirmation email"
    )
    table = Table(
        title="dry run: nothing was changed" if report.dry_run else "import done", show_header=False
    )
    if report.source:
        table.add_row("read as", report.source)
    table.add_row("rows read", str(report.rows))
    table.add_row(f"new, {verb}", f"{report.new}  ({state})")
    table.add_row("already on the list", str(report.existing))
    table.add_row("repeated in the file", str(report.duplicates))
    table.add_row("invalid (skipped)", str(len(report.invalid)))
    if report.states:
        states = ", ".join(f"{status} {n}" for status, n in sorted(report.states.items()))
        table.add_row(
            f"new people by status ({'would be' if report.dry_run else 'as'} added)", states
        )
    if report.ignored_columns:
        table.add_row("columns not imported", ", ".join(report.ignored_columns))
    if report.tags:
        tags = ", ".join(f"{tag} {n}" for tag, n in sorted(report.tags.items()))
        table.add_row("tags (--map-tag TAG=SERIES to choose series)", tags)
    if not report.dry_run and not report.confirmed:
        table.add_row("confirmation emails sent", str(report.confirmations_sent))
        if report.confirmations_failed:
            table.add_row("[red]confirmation emails failed[/red]", str(report.confirmations_failed))
    console.print(table)
    if report.columns and report.source != import_reading.OURS:
        columns = Table("column", "becomes", title="the file's columns")
        for column, became in report.columns:
            columns.add_row(column, "not imported" if became == "ignored" else became)
        console.print(columns)
    if report.invalid:
        problems = Table("line", "problem", title="invalid rows")
        for p in report.invalid[:200]:
            problems.add_row(str(p.line), p.reason)
        console.print(problems)
        if len(report.invalid) > 200:
            console.print(f"… and {len(report.invalid) - 200} more (use --json for all)")


@app.command("export")
def subscribers_export(
    format: str = typer.Option("csv", "--format", help="csv or json"),
    output: Path | None = typer.Option(
        None, "--output", "-o", help="File to write (default: stdout)."
    ),
) -> None:
    """Export every subscriber as CSV or JSON (to stdout or --output)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from newsletter.services import export, roster
    from newsletter.store.db import session_scope

    if format not in ("csv", "json"):
        raise fail("--format must be csv or json", 2)
    s = settings()
    with session_scope(s.database_url) as session:
        total = roster.count(session)
    chunks = export.export_csv(s) if format == "csv" else export.export_json(s)
    with contextlib.ExitStack() as stack:
        out = stack.enter_context(_export_file(output)) if output else sys.stdout
        with Progress(
            TextColumn("exporting"),
            BarColumn(),
            MofNCompleteColumn(),
            console=err.real,
            disable=output is None,
            transient=True,
        ) as bar:
            task = bar.add_task("export", total=total)
            for chunk in chunks:
                out.write(chunk)
                bar.update(task, advance=chunk.count("\n") if format == "csv" else chunk.count("{"))
    if output:
        err.print(f"exported {total} subscribers to {output}")


def _export_file(output: Path) -> contextlib.AbstractContextManager[IO[str]]:
    """The export's file: a new 0600 file (in a folder created 0700) renamed into place when
    whole (core.private_files); a device or pipe named by the user (`-o /dev/stdout`) is
    written as it is."""
    from newsletter.core.private_files import write_private

    if output.exists() and not output.is_file():
        return output.open("w", encoding="utf-8", newline="")
    return write_private(output, "w", encoding="utf-8", newline="")


@app.command("unsubscribe")
def subscribers_unsubscribe(email: str) -> None:
    """Unsubscribe one address from everything."""
    from newsletter.services import roster
    from newsletter.store.db import session_scope

    s = settings()
    with session_scope(s.database_url) as session:
        sub = roster.find(session, email)
        if sub is None:
            raise fail("no subscriber with that address")
        roster.unsubscribe(s, session, sub)  # its queue entries go when the session commits
    console.print("unsubscribed: nothing more will be sent to this address")


@app.command("erase")
def subscribers_erase(
    email: str, yes: bool = typer.Option(False, "--yes", "-y", help="Don't ask.")
) -> None:
    """Erase one person (GDPR): the row goes, a hashed entry stops re-import."""
    from newsletter.services import roster

    s = settings()
    if not yes and sys.stdin.isatty():
        typer.confirm("Erase this person for good?", abort=True)
    found = roster.erase_email(s, email)
    console.print(
        "erased; the address is blocked from re-import"
        if found
        else "nobody had this address; it is now blocked from import"
    )


@app.command("add")
def subscribers_add(
    email: str = typer.Argument(..., help="The address."),
    name: str | None = typer.Option(None, "--name"),
    tz: str | None = typer.Option(None, "--tz", help="IANA zone, e.g. Europe/London."),
    confirmed: bool = typer.Option(
        False, "--confirmed", help="Consent was given elsewhere: active and enrolled now."
    ),
) -> None:
    """Add one subscriber: pending + confirmation email, or (--confirmed) active at once."""
    # The admin page's path (roster.add_subscriber); --confirmed records "cli-consented".
    from newsletter.core import timing
    from newsletter.services import calendar, roster
    from newsletter.store.db import session_scope

    s = settings()
    try:
        sub_id = roster.add_subscriber(
            s, email=email, name=name, timezone=tz, confirmed=confirmed, method="cli"
        )
    except roster.RosterError as exc:
        raise fail(str(exc)) from None
    if not confirmed:
        console.print("added (pending); the confirmation email was sent")
        return
    # The confirmation page's date (calendar.next_date, by the schedule rule), in the CLI's words.
    with session_scope(s.database_url) as session:
        found = calendar.next_date_of(session, sub_id, calendar.utcnow())
    when, zone = found or (None, "UTC")
    first = timing.describe(when, zone) if when else "when a series is queued"
    console.print(f"added (active, consent recorded as given elsewhere); first article: {first}")
