"""Telling the therapist: what stops sending (halt, silent beat, no worker, a bad day) and one email.

`status` reads every problem at once; the dashboard's banner, /healthz and the alert emails all
say the same thing from it. `watch` emails NEWSLETTER_ADMIN_EMAIL once per problem per day (a
Redis key with the practice's date, set only if absent, so several workers or beats never send
it twice) through the configured backend. Who runs `watch`: every worker's heartbeat thread
(it sees a silent beat, a halt, a bad day) and beat each time it sends a tick (it sees that no
worker runs them). With neither running nobody can send email anyway: the dashboard's banner
and /healthz still say it.

Failures of a day are counted in Redis by the send tasks (`count_failures`); the day is the
practice's (NEWSLETTER_DEFAULT_TIMEZONE), so "today" means what the therapist means.
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from newsletter.core.config import Settings
from newsletter.core.vocabulary import HALT_CREDENTIALS, HALT_PRACTICE, HALT_TEMPLATE
from newsletter.mail.backends import get_backend
from newsletter.mail.message import Accepted, Message, Recipient, SendingHalted
from newsletter.queue import liveness
from newsletter.queue.liveness import Liveness
from newsletter.store.db import session_scope
from newsletter.store.halt import halted

log = logging.getLogger(__name__)

ALERT = "alert"  # the message kind
KEEP_SECONDS = 3 * 86400  # day keys outlive their day, then go
RETRY_SECONDS = 3600  # an alert email that could not be sent is tried again after this


@dataclass(frozen=True)
class Problem:
    """One reason sending does not (or did not) work, said for the therapist."""

    key: str  # halted, beat-silent, workers-missing, failures
    title: str  # the banner's heading and the email's subject
    detail: str  # what happened and what to do, one or two sentences
    check: str  # the short public word for /healthz ("beat silent for 5 min")


@dataclass(frozen=True)
class Status:
    reading: Liveness | None  # None when Redis could not be read
    halt: str | None
    failures_today: int
    problems: list[Problem]
    halt_kind: str = HALT_CREDENTIALS  # what stopped sending, when `halt` is set

    @property
    def can_send(self) -> bool:
        return not any(p.key != "failures" for p in self.problems)


def today(settings: Settings, now: float) -> str:
    """The practice's date at `now` (epoch seconds), as YYYY-MM-DD."""
    moment = dt.datetime.fromtimestamp(now, dt.UTC)
    return moment.astimezone(ZoneInfo(settings.default_timezone)).date().isoformat()


def _failures_key(settings: Settings, day: str) -> str:
    return f"{settings.redis_prefix}failures:{day}"


def count_failures(settings: Settings, redis: Any, failed: int, now: float | None = None) -> int:
    """Add a send task's failed deliveries to today's count; the count so far."""
    moment = liveness.redis_now(redis) if now is None else now
    key = _failures_key(settings, today(settings, moment))
    pipe = redis.pipeline()
    pipe.incrby(key, failed)
    pipe.expire(key, KEEP_SECONDS)
    total, _ = pipe.execute()
    return int(total)


def failures_today(settings: Settings, redis: Any, now: float) -> int:
    raw = redis.get(_failures_key(settings, today(settings, now)))
    return int(raw) if raw else 0


# What stopped sending -> (what to tell the therapist, with {reason}; /healthz's short word).
HALT_WORDS: dict[str, tuple[str, str]] = {
    HALT_CREDENTIALS: (
        "The email provider refused the credentials: {reason}. Check the API key (or the SMTP "
        "settings), then press “start sending again” on the dashboard.",
        "halted: the provider refused the credentials",
    ),
    HALT_PRACTICE: (
        "No email can be built from the practice's settings: {reason}. Correct it on the "
        "Settings page (or where the server is configured): sending starts again by itself at "
        "the next tick, and no reader misses a part.",
        "halted: a practice setting can't be used in an email",
    ),
    HALT_TEMPLATE: (
        "The email can't be made from the practice's templates: {reason}. Correct that line "
        "of the template (`newsletter series validate` lists every problem): sending starts again by "
        "itself at the next tick once the file is saved, and no reader misses a part.",
        "halted: an email template can't be rendered",
    ),
}


def problems(
    settings: Settings,
    reading: Liveness | None,
    halt: str | None,
    failed: int,
    halt_kind: str = HALT_CREDENTIALS,
) -> list[Problem]:
    found: list[Problem] = []
    if halt is not None:
        detail, check = HALT_WORDS.get(halt_kind, HALT_WORDS[HALT_CREDENTIALS])
        found.append(Problem("halted", "Sending is stopped", detail.format(reason=halt), check))
    if reading is not None and reading.beat_silent:
        age = liveness.format_age(reading.beat_age)
        found.append(
            Problem(
                "beat-silent",
                "The scheduler (beat) has stopped",
                (f"No tick for {age}" if reading.beat_age is not None else "No tick yet")
                + ": nothing new goes out. Start “newsletter beat” (or restart "
                "“newsletter run” / the beat container).",
                f"silent for {age}",
            )
        )
    if reading is not None and reading.workers_missing:
        waiting = reading.backlog.due_now + reading.backlog.leased
        found.append(
            Problem(
                "workers-missing",
                "No worker is running",
                f"{waiting} {'delivery waits' if waiting == 1 else 'deliveries wait'} and no "
                "worker sends them. Start “newsletter worker” (or restart “newsletter run” / "
                "the worker container).",
                f"none alive while {waiting} wait",
            )
        )
    if failed >= settings.alert_failures:
        found.append(
            Problem(
                "failures",
                "Many emails failed today",
                f"{failed} deliveries failed today (the alarm is at "
                f"{settings.alert_failures}). The dashboard's “Last 7 days” lists them with "
                "the provider's reason.",
                f"{failed} failed today",
            )
        )
    return found


def status(settings: Settings, redis: Any, now: float | None = None) -> Status:
    """Every problem now; Redis or the database being unreachable is /healthz's to report."""
    reading: Liveness | None = None
    failed = 0
    try:
        reading = liveness.read(redis, settings.redis_prefix, now)
        failed = failures_today(settings, redis, reading.now)
    except Exception as exc:  # Redis down: no liveness to read
        log.warning("liveness unreadable: %s", type(exc).__name__)
    halt: str | None = None
    kind = HALT_CREDENTIALS
    try:
        with session_scope(settings.database_url) as session:
            current = halted(session, settings)
        if current is not None:
            halt, kind = current.reason, current.kind
    except Exception as exc:
        log.warning("halt state unreadable: %s", type(exc).__name__)
    return Status(reading, halt, failed, problems(settings, reading, halt, failed, kind), kind)


def alert_message(settings: Settings, problem: Problem) -> Message:
    text = (
        f"{problem.title}.\n\n{problem.detail}\n\n"
        f"The dashboard: {settings.public_url}/admin\n\n"
        "You get one email like this per problem and day, while it lasts.\n"
    )
    paragraphs = "".join(f"<p>{_escape(p)}</p>" for p in text.strip().split("\n\n"))
    return Message(
        kind=ALERT,
        subject=f"Newsletter: {problem.title.lower()}",
        html=f"<!doctype html><html><body>{paragraphs}</body></html>",
        text=text,
    )


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def notify(settings: Settings, redis: Any, problem: Problem, now: float) -> bool:
    """Email the admin about `problem` unless already done today; True when sent now."""
    if not settings.admin_email:
        return False
    key = f"{settings.redis_prefix}alerted:{problem.key}:{today(settings, now)}"
    if not redis.set(key, "1", nx=True, ex=KEEP_SECONDS):
        return False
    to = Recipient(f"alert-{secrets.token_hex(6)}", settings.admin_email, None, "")
    message = alert_message(settings, problem)
    try:
        try:
            outcomes = get_backend(settings).send(message, [to])
        except SendingHalted as exc:
            if exc.kind != HALT_PRACTICE:
                raise
            # the saved sender is what is wrong: tell the therapist from the server's own
            # (checked when the process started), not after the fix they are being asked for
            outcomes = get_backend(settings.environment).send(message, [to])
    except Exception as exc:  # SendingHalted, a backend not configured, a network error
        outcome: object = exc
    else:
        outcome = outcomes[0] if outcomes else None
    if isinstance(outcome, Accepted):
        log.warning("alert emailed to the admin: %s", problem.key)
        return True
    # Not sent (a provider that refused our key refuses this too): try again in an hour.
    redis.expire(key, RETRY_SECONDS)
    log.error("alert %s could not be emailed: %s", problem.key, type(outcome).__name__)
    return False


def watch(settings: Settings, redis: Any, now: float | None = None) -> list[str]:
    """Email each current problem once a day; the keys emailed now."""
    current = status(settings, redis, now)
    if current.reading is None:
        return []
    return [p.key for p in current.problems if notify(settings, redis, p, current.reading.now)]
