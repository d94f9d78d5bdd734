"""The `newsletter` command line: wires settings, database, content, queue and delivery together."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from newsletter.core.config import ConfigError, Settings, get_settings

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

    from newsletter.content import series as content
    from newsletter.mail.render import Renderer
    from newsletter.store import db
    from newsletter.store import series as series_store
    from newsletter.store.models import Series

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
            report = series_store.sync(session, specs)
        except content.ContentError as exc:
            _print_problems(exc.errors)
            raise fail("series not synced") from None
        console.print(f"series synced from {s.schedules_dir}: {report.summary()}")
        # (engine) on a fresh database, queue the shipped series (Myths first, then Co-Created,
        # by their `order`) so a fresh install sends them; later folders stay drafts until
        # `series queue`. Redis needs nothing: no one is enrolled yet, and every worker and
        # beat start rebuilds the queue state from the database when Redis has none.
        if fresh:
            import datetime as dt

            from newsletter.engine import schedule

            session.flush()
            for row in session.scalars(select(Series).order_by(Series.order, Series.id)):
                schedule.queue_series(session, row.slug, None, dt.datetime.now(dt.UTC))
                console.print(f"queued {row.slug} (order {row.order})")
        # (engine) parts appended to a series reach those who finished it, at their next slot.
        reopened: list[int] = []
        for slug in report.appended:
            row_id = session.scalar(select(Series.id).where(Series.slug == slug))
            if row_id is not None:
                reopened += schedule_parts_appended(session, row_id)
        if reopened:
            from newsletter.queue.dueset import RedisQueue

            session.commit()
            RedisQueue(s).sync_enrollments(session, reopened)


def schedule_parts_appended(session: Any, series_id: int) -> list[int]:
    import datetime as dt

    from newsletter.engine import schedule

    return schedule.parts_appended(session, series_id, dt.datetime.now(dt.UTC))


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

    from newsletter.store import db
    from newsletter.store.models import Part, Series

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
    from newsletter.content import series as content
    from newsletter.mail.render import Renderer

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
    from newsletter.content import series as content
    from newsletter.core import tokens
    from newsletter.mail import render

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

# (admin helper) import, export, unsubscribe, erase


@subscribers_app.command("import")
def subscribers_import(
    file: Path = typer.Argument(
        ..., exists=True, dir_okay=False, help="CSV: email, name, timezone, series"
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="Only report what would happen."),
    confirmed: bool = typer.Option(
        False, "--confirmed", help="Consent was given elsewhere: no confirmation email, active now."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Import subscribers from a CSV file (UTF-8, comma or semicolon); a report at the end."""
    import json

    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn

    from newsletter.services import importing, roster

    s = settings()
    size = file.stat().st_size
    with (
        file.open("rb") as raw,
        Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            DownloadColumn(),
            console=err,
            disable=as_json,
            transient=True,
        ) as bar,
    ):
        task = bar.add_task("checking" if dry_run else "importing", total=size)
        try:
            report = importing.import_csv(
                s,
                raw,
                dry_run=dry_run,
                confirmed=confirmed,
                progress=lambda _n: bar.update(task, completed=raw.tell()),
            )
        except roster.RosterError as exc:
            raise fail(str(exc)) from None
    if as_json:
        console.print_json(json.dumps(report.as_dict()))
        return
    _print_import_report(report)


def _print_import_report(report: Any) -> None:
    from rich.table import Table

    verb = "would be added" if report.dry_run else "added"
    state = (
        "active (consent given elsewhere)" if report.confirmed else "pending, confirmation email"
    )
    table = Table(
        title="dry run: nothing was changed" if report.dry_run else "import done", show_header=False
    )
    table.add_row("rows read", str(report.rows))
    table.add_row(f"new, {verb}", f"{report.new}  ({state})")
    table.add_row("already on the list", str(report.existing))
    table.add_row("repeated in the file", str(report.duplicates))
    table.add_row("invalid (skipped)", str(len(report.invalid)))
    if not report.dry_run and not report.confirmed:
        table.add_row("confirmation emails sent", str(report.confirmations_sent))
        if report.confirmations_failed:
            table.add_row("[red]confirmation emails failed[/red]", str(report.confirmations_failed))
    console.print(table)
    if report.invalid:
        problems = Table("line", "problem", title="invalid rows")
        for p in report.invalid[:200]:
            problems.add_row(str(p.line), p.reason)
        console.print(problems)
        if len(report.invalid) > 200:
            console.print(f"… and {len(report.invalid) - 200} more (use --json for all)")


@subscribers_app.command("export")
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
    out = output.open("w", encoding="utf-8", newline="") if output else sys.stdout
    try:
        with Progress(
            TextColumn("exporting"),
            BarColumn(),
            MofNCompleteColumn(),
            console=err,
            disable=output is None,
            transient=True,
        ) as bar:
            task = bar.add_task("export", total=total)
            for chunk in chunks:
                out.write(chunk)
                bar.update(task, advance=chunk.count("\n") if format == "csv" else chunk.count("{"))
    finally:
        if output:
            out.close()
    if output:
        err.print(f"exported {total} subscribers to {output}")


@subscribers_app.command("unsubscribe")
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


@subscribers_app.command("erase")
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


# --- queue, tick and processes -------------------------------------------------------------

# (engine) tick, queue status|rebuild, series queue, subscribers add, worker, beat, run


def _parse_now(value: str | None) -> Any:
    import datetime as dt

    if value is None:
        return dt.datetime.now(dt.UTC)
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise fail(f"--now: not an ISO-8601 time: {value!r} (e.g. 2027-03-02T09:00:00Z)") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


@app.command()
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

    Exits 3, saying so, when another tick holds the lock (its age is named): nothing was sent
    by this one. `failed` counts permanent failures only; rows that will be attempted again
    (provider push-back, outcome unknown, halted) are `retry`.
    """
    import json

    from newsletter.engine.tick import tick as tick_now
    from newsletter.queue.ticklock import TickLocked

    s = settings()
    moment = _parse_now(now)
    try:
        summary = tick_now(s, moment, wait_seconds=wait)
    except TickLocked as exc:
        raise fail(str(exc), code=3) from None
    if as_json:
        print(json.dumps(summary.as_dict()))
        return
    console.print(
        f"tick at {moment.isoformat()}: due {summary.due}, sent {summary.sent}, "
        f"retry {summary.retry}, skipped {summary.skipped}, failed {summary.failed}"
    )


@app.command()
def reconcile(
    now: str | None = typer.Option(None, "--now", help="Act as if the clock said this (ISO-8601)."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """What beat runs every 5 minutes: settle rows handed to the provider with an unknown
    outcome, put back work a crashed tick or worker left, rebuild a lost Redis, re-queue
    overdue enrollments. Run it from cron beside `tick` when beat is not used."""
    import json

    from newsletter.engine.reconcile import reconcile as reconcile_now

    s = settings()
    moment = _parse_now(now)
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


@series_app.command("queue")
def series_queue(
    slug: str = typer.Argument(..., help="The series' slug (see `series list`)."),
    start: str | None = typer.Option(None, "--start", help="Not before this date (YYYY-MM-DD)."),
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
    now = dt.datetime.now(dt.UTC)
    try:
        queued = series_admin.queue_series(s, slug, day, now)
    except series_admin.SeriesAdminError as exc:
        raise fail(str(exc)) from None
    if queued is None:
        raise fail(f"no series {slug!r} (see `newsletter series list`)")
    first = f"; first sends from {queued.first_date}" if queued.first_date else ""
    console.print(f"{slug} queued for {queued.count} subscriber(s){first}")


@subscribers_app.command("add")
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
    from newsletter.engine import schedule
    from newsletter.services import roster
    from newsletter.store.db import session_scope
    from newsletter.store.models import Subscriber

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
    with session_scope(s.database_url) as session:
        sub = session.get(Subscriber, sub_id)
        assert sub is not None
        when, zone = schedule.first_article_at(session, sub), sub.timezone
    first = timing.describe(when, zone) if when else "when a series is queued"
    console.print(f"added (active, consent recorded as given elsewhere); first article: {first}")


def _celery_argv(kind: str) -> list[str]:
    from newsletter.tasks import queue_name

    s = settings()
    if kind == "worker":
        return [
            "worker",
            "--loglevel=INFO",
            "-Q",
            queue_name(s),
            "--without-gossip",
            "--without-mingle",
        ]
    (s.var_dir).mkdir(parents=True, exist_ok=True)
    return ["beat", "--loglevel=INFO", "-s", str(s.var_dir / "celerybeat-schedule")]


@app.command()
def worker(
    concurrency: int | None = typer.Option(None, "--concurrency", "-c", help="Worker processes."),
) -> None:
    """Run a Celery worker (sends articles; add more on other machines for throughput)."""
    from newsletter.tasks import app as celery_app

    argv = _celery_argv("worker") + ([f"--concurrency={concurrency}"] if concurrency else [])
    celery_app.worker_main(argv)


@app.command()
def beat() -> None:
    """Run Celery beat: a tick every minute and a reconcile every 5 minutes (UTC)."""
    from newsletter.tasks import app as celery_app

    celery_app.start(_celery_argv("beat"))


@app.command()
def web(
    host: str = typer.Option("127.0.0.1", "--host"),
    port: int = typer.Option(8000, "--port"),
) -> None:
    """Run the web app (public pages, admin, API, webhook) with uvicorn."""
    import uvicorn

    settings()
    uvicorn.run(
        "newsletter.web.app:create_app", factory=True, host=host, port=port, proxy_headers=True
    )


@app.command()
def run(
    host: str = typer.Option("127.0.0.1", "--host"),
    port: int = typer.Option(8000, "--port"),
) -> None:
    """Everything in one: web, worker, beat (and an embedded Redis when none is configured)."""
    import os
    import signal
    import subprocess
    import time

    from newsletter.queue.embedded import EmbeddedRedis

    s = settings()
    env = dict(os.environ)
    redis_server: EmbeddedRedis | None = None
    if not s.redis_url:
        redis_server = EmbeddedRedis((s.var_dir / "redis").resolve())
        redis_server.start()
        env["NEWSLETTER_REDIS_URL"] = redis_server.url
        (s.var_dir / "redis" / "url").write_text(redis_server.url)  # for other commands
        console.print(f"embedded Redis on {redis_server.url} (data in {s.var_dir / 'redis'})")
    exe = [sys.executable, "-m", "newsletter"]
    commands = {
        "web": [*exe, "web", "--host", host, "--port", str(port)],
        "worker": [*exe, "worker"],
        "beat": [*exe, "beat"],
    }  # fmt: skip
    children: dict[str, subprocess.Popen[bytes]] = {}
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        for name, argv in commands.items():
            children[name] = subprocess.Popen(argv, env=env, start_new_session=True)
        console.print(
            f"newsletter running: web http://{host}:{port}/ (admin at /admin), "
            f"outbox {s.outbox_dir if s.mail_backend == 'outbox' else s.mail_backend}; Ctrl-C stops"
        )
        while not stopping:
            for name, child in children.items():
                if child.poll() is not None:
                    err.print(f"[red]{name} exited with {child.returncode}; stopping[/red]")
                    stopping = True
            time.sleep(0.5)
    finally:
        for child in children.values():
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in children.values():
            try:
                child.wait(timeout=20)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        if redis_server is not None:
            (s.var_dir / "redis" / "url").unlink(missing_ok=True)
            redis_server.stop()
        console.print("stopped")


# --- delivery ------------------------------------------------------------------------------


def _load_part(s: Settings, slug: str, number: int) -> tuple[Any, Any, int]:
    """(series, part, part count) from the database, else from schedules/ (content specs)."""
    from sqlalchemy import func, select
    from sqlalchemy.exc import SQLAlchemyError

    from newsletter.content import series as content
    from newsletter.store import db
    from newsletter.store.models import Part, Series

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


# --- admin ---------------------------------------------------------------------------------


@admin_app.command("set-password")
def admin_set_password(
    password: str = typer.Option(
        ...,
        prompt=True,
        confirmation_prompt=True,
        hide_input=True,
        envvar="NEWSLETTER_NEW_ADMIN_PASSWORD",
        help="Asked for when not given.",
    ),
) -> None:
    """Set the admin password (stored as an Argon2 hash; replaces the previous one)."""
    from newsletter.services import auth
    from newsletter.store.db import session_scope

    s = settings()
    try:
        with session_scope(s.database_url) as session:
            auth.set_password(session, password)
    except ValueError as exc:
        raise fail(str(exc)) from None
    console.print("admin password set")


@admin_app.command("create-token")
def admin_create_token(
    name: str, as_json: bool = typer.Option(False, "--json", help="Print {name, token} as JSON.")
) -> None:
    """Create an API token; it is printed once and only its hash is kept."""
    import json

    from newsletter.services import auth
    from newsletter.store.db import session_scope

    s = settings()
    try:
        with session_scope(s.database_url) as session:
            token = auth.create_token(session, name)
    except ValueError as exc:
        raise fail(str(exc)) from None
    if as_json:
        print(json.dumps({"name": name, "token": token}))
        return
    console.print(f"API token [bold]{name}[/bold] (shown once; keep it safe):", highlight=False)
    print(token)


def main() -> None:
    try:
        app()
    except ConfigError as exc:  # settings read lazily deep inside a command
        err.print(f"[red]configuration error:[/red] {exc}", highlight=False)
        sys.exit(2)
