"""`newsletter broadcast ...`: send a one-off letter to chosen readers, list and cancel them."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from newsletter.cli.common import console, fail, parse_now, print_problems, settings

# Libraries load inside each command, not here, so `newsletter --help` starts fast.

app = typer.Typer(no_args_is_help=True, help="Broadcasts: one-off letters to chosen readers.")


@app.command("create")
def broadcast_create(
    file: Path = typer.Argument(
        ..., help="The letter: Markdown with front matter title: and summary: (like a part)."
    ),
    audience: str = typer.Option(
        "all", "--audience", help="all | series:SLUG[,SLUG] | joined-before:YYYY-MM-DD"
    ),
    at: str = typer.Option(
        "now",
        "--at",
        help="now | YYYY-MM-DD (each reader's usual send time that day, in their zone) | "
        "YYYY-MM-DDTHH:MM[+HH:MM] (one moment; without an offset, the default time zone)",
    ),
    archive: bool = typer.Option(
        False, "--archive/--no-archive", help="Publish it in the web archive and feeds once sent."
    ),
    now: str | None = typer.Option(None, "--now", help="Pretend it is this time (ISO-8601)."),
    as_json: bool = typer.Option(False, "--json", help="Print the broadcast as JSON."),
) -> None:
    """Schedule a one-off letter; it goes through the same exactly-once path as series parts."""
    from newsletter.content.letter import load_letter
    from newsletter.content.series import ContentError
    from newsletter.services import broadcasts

    s = settings()
    moment = parse_now(now)
    try:
        letter = load_letter(file)
        info = broadcasts.create(
            s,
            letter,
            broadcasts.parse_audience(audience),
            broadcasts.parse_when(at, s, moment),
            in_archive=archive,
            now=moment,
        )
    except ContentError as exc:
        print_problems(exc.errors)
        raise typer.Exit(1) from None
    except broadcasts.BroadcastError as exc:
        raise fail(str(exc)) from None
    if as_json:
        console.print_json(json.dumps(info.as_dict()))
        return
    console.print(
        f"broadcast {info.id} ({info.slug}) scheduled for {info.recipients} readers: {info.when}",
        highlight=False,
    )


@app.command("list")
def broadcast_list(
    as_json: bool = typer.Option(False, "--json", help="Print the broadcasts as JSON."),
) -> None:
    """Every broadcast, newest first: audience, when, state, how many sent and waiting."""
    from rich.table import Table

    from newsletter.services import broadcasts

    rows = broadcasts.list_all(settings())
    if as_json:
        console.print_json(json.dumps([r.as_dict() for r in rows]))
        return
    if not rows:
        console.print("no broadcasts yet: `newsletter broadcast create FILE.md`")
        return
    table = Table(title="Broadcasts")
    for column in ("id", "title", "audience", "when", "state", "sent", "waiting", "archive"):
        table.add_column(column)
    for r in rows:
        table.add_row(
            str(r.id), r.title, r.audience, r.when, r.state, str(r.sent), str(r.waiting),
            "yes" if r.in_archive else "no",
        )  # fmt: skip
    console.print(table)


@app.command("cancel")
def broadcast_cancel(
    broadcast_id: int = typer.Argument(..., help="The id `broadcast list` shows."),
    now: str | None = typer.Option(None, "--now", help="Pretend it is this time (ISO-8601)."),
) -> None:
    """Stop a broadcast for every reader it has not reached yet (those it reached keep it)."""
    from newsletter.services import broadcasts

    info = broadcasts.cancel(settings(), broadcast_id, parse_now(now))
    if info is None:
        raise fail(f"no broadcast {broadcast_id} (see `newsletter broadcast list`)")
    console.print(
        f"broadcast {info.id} cancelled: {info.sent} sent before, none will follow",
        highlight=False,
    )
