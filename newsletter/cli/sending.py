"""Sending: `tick`, `reconcile`, `queue status|rebuild` and `send-test`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import typer

from newsletter.cli.common import (
    GROUP,
    console,
    end_quickly,
    err,
    fail,
    parse_now,
    print_problems,
    settings,
)

if TYPE_CHECKING:
    from newsletter.core.config import Settings

# Libraries load inside each command, not here, so `newsletter --help` starts fast.

queue_app = typer.Typer(**GROUP, help="Queue state in Redis.")


def tick(
    now: str | None = typer.Option(None, "--now", help="Act as if the clock said this (ISO-8601)."),
    as_json: bool = typer.Option(
        False, "--json", help='Print {"due", "sent", "retry", "skipped", "failed"}.'
    ),
    wait: float = typer.Option(
        0.0, "--wait", help="Seconds to wait for another tick to finish before giving up."
    ),
) -> None:
    """Send everything due at NOW (default: the clock), synchronously.

    SIGTERM or Ctrl-C finishes the batch in hand and records it; the batches not started go
    back to the queue for the next tick (a minute later): a stop leaves no unknown outcome.

    Exits 3, saying so, when another tick holds the lock (its age is named): nothing was sent
    by this one. `failed` counts permanent failures only; rows that will be attempted again
    (provider push-back, outcome unknown, halted) are `retry`.
    """
    import json

    from newsletter.core.heap import loading

    end_quickly()  # nothing to tidy once it returns: its senders joined, its rows recorded
    with loading():
        from newsletter.engine.senders import SenderLost
        from newsletter.engine.stopping import StopSignal, tick_until_stopped
        from newsletter.queue.ticklock import TickLocked

        s = settings()
    moment = parse_now(now)
    try:
        with StopSignal() as stop:  # SIGTERM: the batch in hand is finished and recorded
            summary = tick_until_stopped(s, moment, stop, wait_seconds=wait)
    except TickLocked as exc:
        raise fail(str(exc), code=3) from None
    except SenderLost as exc:
        raise fail(f"{exc} (this tick: {exc.summary.as_dict()})") from None
    if as_json:
        print(json.dumps(summary.as_dict()))
        return
    console.print(
        f"tick at {moment.isoformat()}: due {summary.due}, sent {summary.sent}, "
        f"retry {summary.retry}, skipped {summary.skipped}, failed {summary.failed}"
    )


def reconcile(
    now: str | None = typer.Option(None, "--now", help="Act as if the clock said this (ISO-8601)."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """What beat runs every minute: settle rows handed to the provider with an unknown
    outcome, put back work a crashed tick or worker left, rebuild a lost Redis, re-queue
    overdue enrollments. Run it from cron beside `tick` when beat is not used."""
    import json

    from newsletter.engine.reconcile import reconcile as reconcile_now

    s = settings()
    moment = parse_now(now)
    report = reconcile_now(s, moment)
    values = report.as_dict()
    if as_json:
        print(json.dumps(values))
        return
    console.print(
        f"reconcile at {moment.isoformat()}: "
        + ", ".join(f"{key.replace('_', ' ')} {value}" for key, value in values.items())
    )


@queue_app.command("status")
def queue_status(as_json: bool = typer.Option(False, "--json")) -> None:
    """What Redis holds: due now, next 24 h, next 7 days, leased."""
    import datetime as dt
    import json

    from newsletter.queue.dueset import RedisQueue
    from newsletter.store.db import session_scope
    from newsletter.store.halt import halted

    s = settings()
    queue = RedisQueue(s)
    with session_scope(s.database_url) as session:
        if queue.ensure(session):
            err.print("Redis had no queue state: rebuilt it from the database")
        halt = halted(session, s)
    st = queue.status(dt.datetime.now(dt.UTC))
    if as_json:
        print(json.dumps({**vars(st), "halted": halt.reason if halt else None}))
        return
    console.print(
        f"due now {st.due_now}\nnext 24 h {st.next_24h}\nnext 7 days {st.next_7d}\n"
        f"leased {st.leased}\nqueued in all {st.total}"
        + (
            ""
            if st.built
            else "\n[yellow]Redis has no queue state: run `newsletter queue rebuild`[/yellow]"
        )
    )
    if halt is not None:
        err.print(
            f"[red]sending is stopped:[/red] {halt.reason} (since {halt.at:%Y-%m-%d %H:%M} UTC). "
            "Check NEWSLETTER_SENDGRID_API_KEY; sending resumes by itself once the key changes, "
            "or from the admin dashboard.",
            highlight=False,
        )


@queue_app.command("rebuild")
def queue_rebuild() -> None:
    """Recreate the Redis queue state from the database (safe at any time)."""
    from newsletter.queue.dueset import RedisQueue
    from newsletter.store.db import session_scope

    s = settings()
    with session_scope(s.database_url) as session:
        count = RedisQueue(s).rebuild(session)
    console.print(f"queue rebuilt from the database: {count} enrollment(s) scheduled")


def _load_part(s: Settings, slug: str, number: int) -> tuple[Any, Any, int]:
    """(series, part, part count) from the database, else from schedules/ (content specs)."""
    from newsletter.content import series as content
    from newsletter.services import series_admin
    from newsletter.store import db

    try:
        with db.session_scope(s.database_url) as session:
            row = series_admin.find(session, slug)
            if row is not None:
                parts = series_admin.parts(session, row.id)
                part = next((p for p in parts if p.number == number), None)
                if part is None:
                    raise fail(f"{slug} has parts 1 to {len(parts)}, not {number}")
                return row, part, len(parts)
    except db.DatabaseError:
        pass  # no database yet: fall back to the files
    try:
        specs = content.load_all(s.schedules_dir)
    except content.ContentError as exc:
        print_problems(exc.errors)
        raise fail("fix the series files first (see `newsletter series validate`)") from None
    spec = next((x for x in specs if x.slug == slug), None)
    if spec is None:
        raise fail(f"no series {slug!r} (have: {', '.join(x.slug for x in specs)})")
    if not 1 <= number <= len(spec.parts):
        raise fail(f"{slug} has parts 1 to {len(spec.parts)}, not {number}")
    return spec, spec.parts[number - 1], len(spec.parts)


def send_test(
    slug: str,
    part: int,
    to: str = typer.Option(..., "--to", help="Where the test email goes (e.g. your own address)."),
    sandbox: bool = typer.Option(
        False, "--sandbox", help="SendGrid sandbox mode: validated by SendGrid, not delivered."
    ),
) -> None:
    """Send one article to one address through the configured backend (marked [Test])."""
    from newsletter.core import identity
    from newsletter.mail import render
    from newsletter.services import mailing

    s = settings()
    try:
        identity.normalise_email(to)
    except ValueError:
        raise fail("--to must be one email address") from None
    if sandbox and s.mail_backend != "sendgrid":
        err.print(f"note: --sandbox only applies to SendGrid; using {s.mail_backend}")
    series, part_row, count = _load_part(s, slug, part)
    article = render.Renderer(s).article(series, part_row, count)
    result = mailing.send_test(s, to, article, sandbox=sandbox)
    if not result.ok:
        raise fail(f"not sent: {result.detail}")
    where = f" into {s.outbox_dir}" if s.mail_backend == "outbox" else ""
    mode = (
        " (sandbox: validated, not delivered)" if sandbox and result.backend == "sendgrid" else ""
    )
    console.print(
        f"sent {slug} part {part} via {result.backend}{where}{mode}; id {result.message_id}",
        highlight=False,
    )
