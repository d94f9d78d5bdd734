"""The `newsletter` command line: wires settings, database, content, queue and delivery together."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

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
    from sqlalchemy import select
    from sqlalchemy.engine import make_url

    from newsletter import content, db
    from newsletter.models import Series
    from newsletter.render import Renderer

    s = settings()
    db.upgrade(s.database_url)
    console.print(
        f"database ready: {make_url(s.database_url).render_as_string(hide_password=True)}"
    )
    # (content) validate and sync schedules/ into the database; refuse on any problem.
    problems = content.validate(s.schedules_dir, check=Renderer(s).check)
    if problems:
        _print_problems(problems)
        raise fail(f"{len(problems)} problem(s) in {s.schedules_dir}; nothing synced")
    specs = content.load_all(s.schedules_dir)
    with db.session_scope(s.database_url) as session:
        fresh = session.scalar(select(Series.id).limit(1)) is None  # no series before this init
        try:
            report = content.sync(session, specs)
        except content.ContentError as exc:
            _print_problems(exc.errors)
            raise fail("series not synced") from None
        console.print(f"series synced from {s.schedules_dir}: {report.summary()}")
        # (engine) on a fresh database, queue the shipped series here (same session): `fresh`
        # is True when the database had no series before this sync.
        _ = fresh


# --- series --------------------------------------------------------------------------------

WEEKDAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def _print_problems(problems: list[str]) -> None:
    for problem in problems:
        err.print(problem, highlight=False, markup=False)


@series_app.command("list")
def series_list() -> None:
    """The series in the database: slug, title, parts, send day/time, state."""
    from rich.table import Table
    from sqlalchemy import func, select
    from sqlalchemy.exc import OperationalError, ProgrammingError

    from newsletter import db
    from newsletter.models import Part, Series

    s = settings()
    try:
        with db.session_scope(s.database_url) as session:
            counts = dict(
                session.execute(
                    select(Part.series_id, func.count(Part.id)).group_by(Part.series_id)
                ).all()
            )
            rows = list(session.scalars(select(Series).order_by(Series.order, Series.slug)))
    except (OperationalError, ProgrammingError):
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
    for row in rows:
        sends = f"{WEEKDAY_NAMES[row.send_day]} {row.send_time}, {row.cadence}"
        table.add_row(row.slug, row.title, str(counts.get(row.id, 0)), sends, row.state)
    console.print(table)


@series_app.command("validate")
def series_validate(
    path: Path | None = typer.Argument(
        None, help="A schedules folder or one series folder (default: the schedules folder)."
    ),
) -> None:
    """Check series files and that every part renders through the email templates."""
    from newsletter import content
    from newsletter.render import Renderer

    s = settings()
    target = path if path is not None else s.schedules_dir
    renderer = Renderer(s)
    problems = content.validate(target, check=renderer.check) + renderer.check_templates()
    if problems:
        _print_problems(problems)
        raise fail(f"{len(problems)} problem(s) found")
    specs = content.load_all(target)
    parts = sum(len(spec.parts) for spec in specs)
    console.print(f"valid: {len(specs)} series, {parts} parts in {target}", highlight=False)


@series_app.command("preview")
def series_preview(
    slug: str,
    part: int,
    text: bool = typer.Option(False, "--text", help="The plain-text part instead of HTML."),
) -> None:
    """Print one article email as a sample subscriber would get it (HTML unless --text)."""
    from newsletter import content, render, tokens

    s = settings()
    try:
        specs = content.load_all(s.schedules_dir)
    except content.ContentError as exc:
        _print_problems(exc.errors)
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


# --- subscribers ---------------------------------------------------------------------------


# --- queue, tick and processes -------------------------------------------------------------


# --- delivery ------------------------------------------------------------------------------


def _load_part(s: Settings, slug: str, number: int) -> tuple[Any, Any, int]:
    """(series, part, part count) from the database, else from schedules/ (content specs)."""
    from sqlalchemy import func, select
    from sqlalchemy.exc import SQLAlchemyError

    from newsletter import content, db
    from newsletter.models import Part, Series

    try:
        with db.session_scope(s.database_url) as session:
            row = session.scalar(select(Series).where(Series.slug == slug))
            if row is not None:
                part = session.scalar(
                    select(Part).where(Part.series_id == row.id, Part.number == number)
                )
                count = session.scalar(
                    select(func.count()).select_from(Part).where(Part.series_id == row.id)
                )
                if part is None:
                    raise fail(f"{slug} has parts 1 to {count}, not {number}")
                return row, part, int(count or 0)
    except SQLAlchemyError:
        pass  # no database yet: fall back to the files
    try:
        specs = content.load_all(s.schedules_dir)
    except content.ContentError as exc:
        _print_problems(exc.errors)
        raise fail("fix the series files first (see `newsletter series validate`)") from None
    spec = next((x for x in specs if x.slug == slug), None)
    if spec is None:
        raise fail(f"no series {slug!r} (have: {', '.join(x.slug for x in specs)})")
    if not 1 <= number <= len(spec.parts):
        raise fail(f"{slug} has parts 1 to {len(spec.parts)}, not {number}")
    return spec, spec.parts[number - 1], len(spec.parts)


@app.command("send-test")
def send_test(
    slug: str,
    part: int,
    to: str = typer.Option(..., "--to", help="Where the test email goes (e.g. your own address)."),
    sandbox: bool = typer.Option(
        False, "--sandbox", help="SendGrid sandbox mode: validated by SendGrid, not delivered."
    ),
) -> None:
    """Send one article to one address through the configured backend (marked [Test])."""
    import dataclasses
    import secrets

    from newsletter import render, tokens
    from newsletter.delivery import get_backend
    from newsletter.delivery.base import TEST, Accepted, Failed, Recipient, SendingHalted
    from newsletter.delivery.mime import address

    s = settings()
    try:
        address(None, to)
    except ValueError:
        raise fail("--to must be one email address") from None
    if sandbox and s.mail_backend != "sendgrid":
        err.print(f"note: --sandbox only applies to SendGrid; using {s.mail_backend}")
    series, part_row, count = _load_part(s, slug, part)
    article = render.Renderer(s).article(series, part_row, count)
    message = dataclasses.replace(
        article,
        kind=TEST,
        subject=f"[Test] {article.subject}",
        sandbox=sandbox,
        categories=(*article.categories, "test")[:10],
    )
    holder = "send-test"  # no subscriber behind a test: the links lead to a harmless "not found"
    unsubscribe_url = tokens.link(s.public_url, s.secret, "unsubscribe", holder)
    recipient = Recipient(
        delivery_id=f"test-{secrets.token_hex(6)}",
        email=to,
        name=None,
        unsubscribe_url=unsubscribe_url,
        values=render.personal_values(
            name=None,
            unsubscribe_url=unsubscribe_url,
            preferences_url=tokens.link(s.public_url, s.secret, "preferences", holder),
        ),
    )
    try:
        backend = get_backend(s)
        [outcome] = backend.send(message, [recipient])
    except SendingHalted as exc:
        raise fail(f"sending is halted: {exc.reason}") from None
    except ValueError as exc:  # backend not configured (missing key or SMTP URL)
        raise fail(str(exc)) from None
    if isinstance(outcome, Accepted):
        where = f" into {s.outbox_dir}" if s.mail_backend == "outbox" else ""
        mode = (
            " (sandbox: validated, not delivered)" if sandbox and backend.name == "sendgrid" else ""
        )
        console.print(
            f"sent {slug} part {part} via {backend.name}{where}{mode}; id {outcome.message_id}",
            highlight=False,
        )
        return
    if isinstance(outcome, Failed):
        raise fail(f"refused: {outcome.reason}")
    raise fail(f"not sent, try again later: {outcome.reason}")


# --- admin ---------------------------------------------------------------------------------


def main() -> None:
    try:
        app()
    except ConfigError as exc:  # settings read lazily deep inside a command
        err.print(f"[red]configuration error:[/red] {exc}", highlight=False)
        sys.exit(2)
