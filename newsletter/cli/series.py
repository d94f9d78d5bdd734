"""`newsletter series ...`: list, validate, preview and queue series."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from newsletter.cli.common import GROUP, console, err, fail, parse_now, print_problems, settings

# Libraries load inside each command, not here, so `newsletter --help` starts fast.

app = typer.Typer(**GROUP, help="Series: list, validate, preview, queue.")

WEEKDAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


@app.command("list")
def series_list() -> None:
    """The series in the database: slug, title, parts, send day/time, state."""
    from rich.table import Table

    from newsletter.services import series_admin
    from newsletter.store import db

    s = settings()
    try:
        with db.session_scope(s.database_url) as session:
            rows = series_admin.listing(session)  # broadcasts: `newsletter broadcast list`
    except db.NOT_READY:
        raise fail("the database is not set up yet: run `newsletter init`") from None
    if not rows:
        console.print("no series yet: add a folder to schedules/ and run `newsletter init`")
        return
    table = Table(title="Series")
    table.add_column("slug", no_wrap=True)
    table.add_column("title")
    table.add_column("parts", justify="right")
    table.add_column("sends", no_wrap=True)
    table.add_column("state")
    for row, parts in rows:
        sends = f"{WEEKDAY_NAMES[row.send_day]} {row.send_time}, {row.cadence}"
        table.add_row(row.slug, row.title, str(len(parts)), sends, row.state)
    console.print(table)


@app.command("validate")
def series_validate(
    path: Path | None = typer.Argument(
        None, help="A schedules folder or one series folder (default: the schedules folder)."
    ),
) -> None:
    """Check series files and that every part renders through the email templates."""
    from newsletter.content import series as content
    from newsletter.mail.render import Renderer

    s = settings()
    target = path if path is not None else s.schedules_dir
    renderer = Renderer(s)
    problems = content.validate(target, check=renderer.check) + renderer.check_templates()
    if problems:
        print_problems(problems)
        raise fail(f"{len(problems)} problem(s) found")
    specs = content.load_all(target)
    parts = sum(len(spec.parts) for spec in specs)
    console.print(f"valid: {len(specs)} series, {parts} parts in {target}", highlight=False)


@app.command("preview")
def series_preview(
    slug: str,
    part: int,
    text: bool = typer.Option(False, "--text", help="The plain-text part instead of HTML."),
) -> None:
    """Print one article email as a sample subscriber would get it (HTML unless --text)."""
    from newsletter.content import series as content
    from newsletter.core import tokens
    from newsletter.mail import render

    s = settings()
    try:
        specs = content.load_all(s.schedules_dir)
    except content.ContentError as exc:
        print_problems(exc.errors)
        raise fail("fix the series files first (see `newsletter series validate`)") from None
    spec = next((x for x in specs if x.slug == slug), None)
    if spec is None:
        raise fail(
            f"no series {slug!r} in {s.schedules_dir} (have: {', '.join(x.slug for x in specs)})"
        )
    if not 1 <= part <= len(spec.parts):
        raise fail(f"{slug} has parts 1 to {len(spec.parts)}, not {part}")
    message = render.Renderer(s).article(spec, spec.parts[part - 1], len(spec.parts))
    sample = "sample-subscriber"
    values = render.personal_values(
        name="Alex",
        unsubscribe_url=tokens.link(s.public_url, s.secret, "unsubscribe", sample),
        preferences_url=tokens.link(s.public_url, s.secret, "preferences", sample),
    )
    err.print(f"Subject: {message.subject}", highlight=False, markup=False)
    sys.stdout.write(render.personalise(message.text if text else message.html, values))
    sys.stdout.flush()


@app.command("queue")
def series_queue(
    slug: str = typer.Argument(..., help="The series' slug (see `series list`)."),
    start: str | None = typer.Option(
        None,
        "--start",
        help="Nobody gets part 1 before this date (YYYY-MM-DD), also readers who join later.",
    ),
    now: str | None = typer.Option(None, "--now", help="Pretend it is this time (ISO-8601)."),
) -> None:
    """Make a series live and append it to every active subscriber's queue."""
    import datetime as dt

    from newsletter.services import series_admin

    s = settings()
    day = None
    if start is not None:
        try:
            day = dt.date.fromisoformat(start)
        except ValueError:
            raise fail(f"--start: not a date: {start!r} (use YYYY-MM-DD)") from None
    try:
        queued = series_admin.queue_series(s, slug, day, parse_now(now))
    except series_admin.SeriesAdminError as exc:
        raise fail(str(exc)) from None
    if queued is None:
        raise fail(f"no series {slug!r} (see `newsletter series list`)")
    first = f"; first sends from {queued.first_date}" if queued.first_date else ""
    console.print(f"{slug} queued for {queued.count} subscriber(s){first}")
