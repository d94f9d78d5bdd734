"""Doctor checks of what runs: Redis, migrations, series files, beat, workers, SendGrid's events."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from newsletter.services.doctor.findings import Context, Finding, error, ok, warning

REDIS_CONF = "in redis.conf (or `redis-server --appendonly yes --maxmemory-policy noeviction`)"


def _redis_or_finding(ctx: Context, check: str) -> tuple[Any, Finding | None]:
    """A Redis client, or the error finding saying why there is none. Checks other than
    "redis" only point at it: the redis finding says what to do."""
    import redis

    try:
        return ctx.redis(), None
    except redis.RedisError as exc:
        if check != "redis":
            return None, error(check, "not checked: no Redis to read (see the redis finding)")
        if ctx.redis_url() is None:
            return None, error(
                check,
                "NEWSLETTER_REDIS_URL is not set and no `newsletter run` is running: start "
                "`newsletter run`, or set NEWSLETTER_REDIS_URL to a Redis server",
            )
        return None, error(
            check,
            f"Redis does not answer ({type(exc).__name__}): check NEWSLETTER_REDIS_URL "
            "(host, port, password) and that the server runs",
        )


def redis_server(ctx: Context) -> list[Finding]:
    """Persistence (AOF or RDB snapshots) and `maxmemory-policy noeviction`: Celery's queue and
    the leases live in Redis, and an evicting Redis drops them silently."""
    import redis

    client, problem = _redis_or_finding(ctx, "redis")
    if problem is not None:
        return [problem]
    found: list[Finding] = []
    if not ctx.settings.redis_url:
        found.append(
            warning(
                "redis",
                "NEWSLETTER_REDIS_URL is not set: the embedded Redis runs only inside `newsletter "
                "run`; for separate web, worker and beat processes run a Redis server and set it",
            )
        )
    try:
        config: dict[str, str] = {}
        for name in ("appendonly", "save", "maxmemory-policy"):
            config.update(client.config_get(name))
    except redis.ResponseError:  # CONFIG renamed or forbidden (managed Redis)
        return [
            *found,
            warning(
                "redis",
                "Redis refuses CONFIG GET, so persistence and eviction were not checked: make "
                "sure it has appendonly yes (or RDB saves) and maxmemory-policy noeviction",
            ),
        ]
    aof = config.get("appendonly", "no") == "yes"
    rdb = bool(config.get("save", "").strip())
    if not aof and not rdb:
        found.append(
            error(
                "redis",
                "Redis keeps nothing on disk (appendonly no, no save points): a restart loses "
                f"queued sends and rate limits; set appendonly yes {REDIS_CONF}",
            )
        )
    policy = config.get("maxmemory-policy", "?")
    if policy != "noeviction":
        found.append(
            error(
                "redis",
                f"Redis maxmemory-policy is {policy}: under memory pressure it would drop queued "
                f"work; set maxmemory-policy noeviction {REDIS_CONF}",
            )
        )
    if not any(f.level == "error" for f in found):
        kind = "AOF" if aof else "RDB snapshots"
        found.append(ok("redis", f"Redis persists ({kind}) and never evicts (noeviction)"))
    return found


def migrations(ctx: Context) -> list[Finding]:
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import SQLAlchemyError

    from newsletter.store import db

    url = ctx.settings.database_url
    if make_url(url).get_backend_name() == "sqlite":
        path = Path(make_url(url).database or "")
        if not path.is_file():  # connecting would create an empty file: say so instead
            return [error("migrations", f"no database at {path}: run `newsletter init`")]
    heads = set(ScriptDirectory.from_config(db.alembic_config(url)).get_heads())
    try:
        with db.get_engine(url).connect() as conn:
            current = set(MigrationContext.configure(conn).get_current_heads())
    except SQLAlchemyError as exc:
        return [
            error(
                "migrations",
                f"cannot open the database ({type(exc).__name__}): check "
                "NEWSLETTER_DATABASE_URL and that the server runs",
            )
        ]
    if current == heads:
        return [ok("migrations", f"the database schema is current ({', '.join(sorted(heads))})")]
    if not current:
        return [error("migrations", "the database has no schema yet: run `newsletter init`")]
    script = ScriptDirectory.from_config(db.alembic_config(url))
    known = {rev.revision for rev in script.walk_revisions()}
    if not current <= known:
        return [
            error(
                "migrations",
                f"the database is at {', '.join(sorted(current))}, which this version does not "
                "know: it was upgraded by a newer version; run that version (or restore a backup)",
            )
        ]
    return [
        error(
            "migrations",
            f"the database is at {', '.join(sorted(current))}, this version needs "
            f"{', '.join(sorted(heads))}: run `newsletter init` (back up first: `newsletter backup`)",
        )
    ]


def series_files(ctx: Context) -> list[Finding]:
    from newsletter.content import series as content
    from newsletter.mail.render import Renderer

    folder = ctx.settings.schedules_dir
    renderer = Renderer(ctx.settings)
    problems = content.validate(folder, check=renderer.check) + renderer.check_templates()
    if problems:
        return [
            error(
                "series",
                f"{len(problems)} problem(s) in {folder} or the email templates, the first: "
                f"{problems[0]}; run `newsletter series validate` for all",
            )
        ]
    specs = content.load_all(folder)
    parts = sum(len(spec.parts) for spec in specs)
    return [ok("series", f"{len(specs)} series, {parts} parts in {folder}: all valid")]


def _liveness(ctx: Context, check: str) -> tuple[Any, Finding | None]:
    from newsletter.queue import liveness

    client, problem = _redis_or_finding(ctx, check)
    if problem is not None:
        return None, problem
    return liveness.read(client, ctx.settings.redis_prefix), None


def beat(ctx: Context) -> list[Finding]:
    """Beat showed a sign of life (a tick sent or run) within the silence threshold; the compose
    healthcheck of the beat service runs this check alone (`newsletter doctor --check beat`)."""
    from newsletter.queue.liveness import BEAT_SILENT_SECONDS, format_age

    state, problem = _liveness(ctx, "beat")
    if problem is not None:
        return [problem]
    age = state.beat_age
    if age is None:
        return [
            error(
                "beat",
                "beat has never ticked: start `newsletter beat` (or `newsletter run`; or cron "
                "`newsletter tick` every minute)",
            )
        ]
    if age >= BEAT_SILENT_SECONDS:
        return [
            error(
                "beat",
                f"beat last ticked {format_age(age)} ago: nothing new is sent; restart "
                "`newsletter beat` and look at its log",
            )
        ]
    return [ok("beat", f"beat last ticked {format_age(age)} ago")]


def workers(ctx: Context) -> list[Finding]:
    state, problem = _liveness(ctx, "workers")
    if problem is not None:
        return [problem]
    if not state.workers:
        return [
            error(
                "workers",
                "no worker has been seen in the last minute: start `newsletter worker` (or "
                "`newsletter run`); without one nothing due is sent",
            )
        ]
    return [ok("workers", f"{len(state.workers)} worker(s) alive")]


def sending(ctx: Context) -> list[Finding]:
    """Whether sending is halted (and why), and whether the practice's settings — the effective
    ones, saved in the browser or set in the environment — can make an email at all."""
    from sqlalchemy.exc import SQLAlchemyError

    from newsletter.core.vocabulary import HALT_PRACTICE, HALT_TEMPLATE
    from newsletter.mail.mime import practice_problem
    from newsletter.store.db import session_scope
    from newsletter.store.halt import halted

    found: list[Finding] = []
    try:
        problem = practice_problem(ctx.settings)
        with session_scope(ctx.settings.database_url) as session:
            current = halted(session, ctx.settings)
    except SQLAlchemyError:
        return [error("sending", "not checked: the database can't be read (see migrations)")]
    if problem is not None:
        found.append(error("sending", f"{problem}: correct it and sending resumes by itself"))
    if current is not None:
        todo = {
            HALT_PRACTICE: "correct the practice's settings; sending resumes by itself once "
            "they change",
            HALT_TEMPLATE: "correct the email template; sending resumes by itself once the "
            "file changes",
        }.get(
            current.kind,
            "check the API key (or SMTP settings), then start sending again on the dashboard",
        )
        since = f"{current.at:%Y-%m-%d %H:%M} UTC"
        found.append(error("sending", f"sending is halted since {since}: {current.reason}; {todo}"))
    return found or [ok("sending", "sending is on, and the practice's settings make emails")]


# engine.webhook_flow state -> (level, what it means and what to do); NOT_SENDGRID/IDLE are ok.
FLOW_FINDINGS = {
    "not-configured": (
        warning,
        "SendGrid sends, but its signed Event Webhook is not set up: handed mail whose answer "
        "was lost waits 24 hours before it is sent again, and bounces are not heard; set "
        "NEWSLETTER_SENDGRID_WEBHOOK_PUBLIC_KEY (or connect SendGrid on Settings > Mail)",
    ),
    "silent": (
        warning,
        "no SendGrid event has come since mail was handed at {at} (more than {quiet} minutes "
        "ago): check the Event Webhook's URL in SendGrid points at this site's "
        "/webhooks/sendgrid and that it is reachable from the internet",
    ),
    "refused": (
        error,
        "SendGrid posted events since mail was handed at {at} but every post was refused: "
        "check NEWSLETTER_SENDGRID_WEBHOOK_PUBLIC_KEY is the key SendGrid shows now, and the "
        "web process's log",
    ),
}


def webhook_events(ctx: Context) -> list[Finding]:
    """Are SendGrid's signed events flowing back (engine.webhook_flow)? Without them the absence
    rule cannot act and handed mail waits 24 h."""
    from sqlalchemy.exc import SQLAlchemyError

    from newsletter.core.timing import utcnow
    from newsletter.engine.webhook_flow import QUIET_AFTER, webhook_flow
    from newsletter.store.db import session_scope

    try:
        with session_scope(ctx.settings.database_url) as session:
            flow = webhook_flow(ctx.settings, session, utcnow())
    except SQLAlchemyError:
        return [error("webhook-events", "not checked: the database can't be read (see migrations)")]
    if flow.state in FLOW_FINDINGS:
        make, text = FLOW_FINDINGS[flow.state]
        at = f"{flow.handed_at:%Y-%m-%d %H:%M} UTC" if flow.handed_at else "?"
        quiet = int(QUIET_AFTER.total_seconds() // 60)
        return [make("webhook-events", text.format(at=at, quiet=quiet))]
    if flow.state == "flowing" and flow.last_answered is not None:
        return [
            ok("webhook-events", f"SendGrid's events arrive (last {flow.last_answered:%H:%M} UTC)")
        ]
    if flow.state == "idle":
        return [ok("webhook-events", "no mail handed to SendGrid lately: nothing to expect yet")]
    return [ok("webhook-events", "not SendGrid: no events to expect")]
