"""Celery wiring: the app on Redis, the beat schedule (tick, reconcile) and thin task wrappers.

Reliability settings (see research/celery-reliability.md): acks late + reject on worker lost
(the ledger makes a replayed task harmless), prefetch 1, a visibility timeout far above the lease
and the task time limit, no results stored, beat in UTC. Every broker key lives under
settings.redis_prefix (kombu `global_keyprefix`) and the queue name is derived from it.
Beat only triggers: each tick sweeps everything due at or before now, so a missed tick is caught
up by the next; several beats are harmless (one tick per interval slot, atomic claims). Ticks fall
on whole multiples of the interval (:00 of every minute), where send slots are, not every 60 s
from beat's start.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import os
import time
from collections.abc import Callable
from typing import Any

from celery import Celery, signals
from celery.schedules import schedstate, schedule

from newsletter.core.config import Settings, get_settings
from newsletter.core.heap import settle_heap
from newsletter.engine.plan import Chunk
from newsletter.engine.reconcile import reconcile as reconcile_now
from newsletter.engine.send import send_chunk as send_now
from newsletter.engine.tick import sweep
from newsletter.mail.backends import get_backend
from newsletter.mail.render import shared_renderer
from newsletter.queue import liveness
from newsletter.queue.connection import redis_url
from newsletter.queue.dueset import RedisQueue
from newsletter.queue.ticklock import TickLocked
from newsletter.services import alerts, logs, metrics, webhooks_out
from newsletter.store.db import dispose_all, session_scope
from newsletter.store.practice import effective_settings

log = logging.getLogger("newsletter.tasks")

# Seconds between beat ticks (NEWSLETTER_BEAT_SECONDS; tests shorten it), ticks aligned to whole
# multiples of it since the epoch. Reconcile: every minute (the absence rule, engine.absence,
# settles a chunk the provider never took at the window plus one reconcile plus one tick).
BEAT_SECONDS = float(os.environ.get("NEWSLETTER_BEAT_SECONDS", "60"))
RECONCILE_SECONDS = float(os.environ.get("NEWSLETTER_RECONCILE_SECONDS", "60"))
WEBHOOK_SECONDS = float(os.environ.get("NEWSLETTER_WEBHOOK_SECONDS", "15"))  # outgoing webhooks
TASK_TIME_LIMIT = 300


class aligned(schedule):  # lower case like celery's `schedule` and `crontab`
    """Due at every whole multiple of `run_every` since the epoch (:00 of each minute for 60 s),
    whenever beat started; a beat that was down past a boundary runs once at start."""

    def is_due(self, last_run_at: dt.datetime) -> schedstate:
        period = self.run_every.total_seconds()
        now = self.now().timestamp()
        boundary = math.floor(now / period) * period
        wait = boundary + period - now
        due = self.maybe_make_aware(last_run_at).timestamp() < boundary
        return schedstate(due, wait)

    def remaining_estimate(self, last_run_at: dt.datetime) -> dt.timedelta:
        due, wait = self.is_due(last_run_at)
        return dt.timedelta(seconds=0 if due else wait)


def tick_slot(timestamp: float, period: float = BEAT_SECONDS) -> tuple[int, dt.datetime]:
    """(beat interval, moment to sweep at) for a tick that reads `timestamp` from Redis.

    A tick up to 2 s (a quarter interval) before a boundary by Redis's clock (beat's clock a
    little ahead) is that boundary's tick and sweeps as of it, so nothing due at the boundary
    waits for the next one."""
    slot = math.floor((timestamp + min(2.0, period / 4)) / period)
    return slot, dt.datetime.fromtimestamp(max(timestamp, slot * period), dt.UTC)


def queue_name(settings: Settings) -> str:
    return f"{settings.redis_prefix}celery"


def configure(app: Celery, settings: Settings) -> Celery:
    url = redis_url(settings)
    visibility = max(3600, 4 * settings.lease_seconds, 4 * TASK_TIME_LIMIT)
    transport = {
        "visibility_timeout": visibility,
        "global_keyprefix": f"{settings.redis_prefix}kombu:",
    }
    app.conf.update(
        broker_url=url,
        result_backend=None,
        task_ignore_result=True,
        broker_transport_options=transport,
        visibility_timeout=visibility,
        task_default_queue=queue_name(settings),
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_time_limit=TASK_TIME_LIMIT,
        task_soft_time_limit=TASK_TIME_LIMIT - 30,
        worker_cancel_long_running_tasks_on_connection_loss=True,
        broker_connection_retry_on_startup=True,
        enable_utc=True,
        timezone="UTC",
        beat_schedule={
            "tick": {"task": "newsletter.tick", "schedule": aligned(BEAT_SECONDS)},
            "reconcile": {"task": "newsletter.reconcile", "schedule": RECONCILE_SECONDS},
            "webhooks": {"task": "newsletter.webhooks_sweep", "schedule": WEBHOOK_SECONDS},
        },
        beat_schedule_filename=str(settings.var_dir / "celerybeat-schedule"),
    )
    return app


def make_app(settings: Settings | None = None) -> Celery:
    return configure(Celery("newsletter"), settings or get_settings())


# Configured at import from the environment (NEWSLETTER_*): `celery -A newsletter.tasks` and
# `newsletter worker|beat` both get the same app. Without NEWSLETTER_REDIS_URL this starts or
# reuses the embedded Redis under var/redis (see queue.redis_client).
app = make_app()


def current_settings() -> Settings:
    """The effective settings for one task: the environment's with the values saved on the
    Settings page (store.practice.effective_settings; the rows are cached CACHE_SECONDS, so a
    worker sees a change within that). Every task and signal handler that sends, renders or
    alerts starts from these."""
    return effective_settings(get_settings())


def _now(value: str | None) -> dt.datetime:
    if value is None:
        return dt.datetime.now(dt.UTC)
    parsed = dt.datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


@app.task(name="newsletter.tick")
def tick(now: str | None = None) -> dict[str, int]:
    """Claim what is due and fan it out as send tasks (one per chunk of one article).

    From beat (no `now`): only the first tick of each beat interval runs, however many beats.
    With an explicit `now` (tests, manual catch-up) it always runs.
    """
    with logs.context(tick_id=tick.request.id):
        return _tick(now)


def _tick(now: str | None) -> dict[str, int]:
    settings = current_settings()
    queue = RedisQueue(settings)
    started = time.perf_counter()
    if now is None:  # one clock for every worker and beat: Redis's (clock drift, #18)
        seconds, micros = queue.redis.time()
        slot, moment = tick_slot(seconds + micros / 1e6)
        if not queue.first_tick_in(slot, int(BEAT_SECONDS * 3) + 1):
            log.info("tick skipped: slot %s already ticked", slot)
            return {"due": 0, "chunks": 0}
        log.info("tick ran: slot %s", slot)
    else:
        moment = _now(now)

    def fan_out(chunk: Chunk) -> None:
        send_chunk.delay(
            chunk.series_id,
            chunk.part_number,
            list(chunk.delivery_ids),
            moment.isoformat(),
            time.time(),
        )

    try:
        summary, chunks = sweep(settings, moment, fan_out, queue=queue)
    except TickLocked as exc:
        log.info("tick skipped: %s", exc)
        return {"due": 0, "chunks": 0}
    result = {"due": summary.due, "chunks": chunks, "skipped": summary.skipped}
    took = time.perf_counter() - started
    record: dict[str, float] = {**result, "seconds": round(took, 3)}
    liveness.record_tick(queue.redis, settings.redis_prefix, record)
    log.info("tick done: %s", record)
    metrics.ticked(result, took, "beat" if now is None else "manual")
    return {"due": summary.due, "chunks": chunks}


@app.task(name="newsletter.send_chunk")
def send_chunk(
    series_id: int,
    part_number: int,
    delivery_ids: list[int],
    now: str | None = None,
    queued_at: float | None = None,
) -> dict[str, int]:
    """Send one article to one chunk of claimed ledger rows (safe to run twice).

    Its moment is the tick's plus the time the task waited in the queue (`queued_at`, the
    fan-out's clock), so a backlog stamps the real hand-over time, not the tick's.
    """
    settings = current_settings()
    chunk = Chunk(series_id, part_number, tuple(delivery_ids))
    moment = task_moment(now, queued_at) if now else None
    ids = {"series_id": series_id, "part": part_number, "deliveries": len(delivery_ids)}
    with logs.context(chunk_id=send_chunk.request.id, **ids):
        started = time.perf_counter()
        result = send_now(settings, chunk, moment).as_dict()
        metrics.chunk_sent(result, time.perf_counter() - started, settings.mail_backend)
        log.info("chunk done: %s", result)
        if result.get("failed"):
            alerts.count_failures(settings, RedisQueue(settings).redis, result["failed"])
    return result


def task_moment(
    now: str, queued_at: float | None, clock: Callable[[], float] = time.time
) -> dt.datetime:
    """A send task's moment: the tick's, plus how long the task waited in the queue."""
    waited = max(0.0, clock() - queued_at) if queued_at is not None else 0.0
    return _now(now) + dt.timedelta(seconds=waited)


@app.task(name="newsletter.reconcile")
def reconcile() -> dict[str, int]:
    """Rebuild a lost Redis, settle rows stuck in `claimed`, re-queue overdue enrollments."""
    report = reconcile_now(current_settings()).as_dict()
    metrics.reconciled(report)
    return report


@app.task(name="newsletter.webhooks_sweep")
def webhooks_sweep(now: str | None = None) -> int:
    """Hand every due outgoing-webhook delivery to `webhook_deliver` (services.webhooks_out)."""
    moment = _now(now)
    return webhooks_out.sweep(current_settings(), moment, lambda i: webhook_deliver.delay(i, now))


@app.task(name="newsletter.webhook_deliver")
def webhook_deliver(delivery_id: int, now: str | None = None) -> str | None:
    """One attempt at one outgoing-webhook delivery; a failure sets its next try (backoff)."""
    return webhooks_out.deliver(current_settings(), delivery_id, _now(now))


def eviction_problem(policy: str) -> str | None:
    """Why a Redis `maxmemory-policy` is unsafe for the broker and queue state, or None."""
    if policy == "noeviction":
        return None
    return (
        f"Redis maxmemory-policy is {policy!r}: under memory pressure Redis may drop broker "
        "queues or the due set; set it to 'noeviction'"
    )


def check_redis(settings: Settings) -> bool:
    """On worker/beat start: warn about key eviction; rebuild the queue state when Redis lost
    it. True when rebuilt."""
    queue = RedisQueue(settings)
    try:
        policy = str(queue.redis.config_get("maxmemory-policy").get("maxmemory-policy", ""))
    except Exception:  # CONFIG may be refused by ACLs on a managed Redis
        policy = ""
    problem = eviction_problem(policy) if policy else None
    if problem:
        log.warning(problem)
    with session_scope(settings.database_url) as session:
        rebuilt = queue.ensure(session)
    if rebuilt:
        log.warning("Redis had no queue state: rebuilt it from the database")
    return rebuilt


@signals.worker_ready.connect
def _worker_ready(**_: Any) -> None:
    check_redis(get_settings())


@signals.beat_init.connect
def _beat_init(**_: Any) -> None:
    global _in_beat
    _in_beat = True
    check_redis(get_settings())


_in_beat = False  # set in the beat process: only its tick tasks are beat's sign of life


@signals.worker_process_init.connect
def _fresh_connections(**_: Any) -> None:
    settle_process()


@signals.worker_init.connect
def _warm(**_: Any) -> None:
    """Before the pool forks: load the mail backend's client and compile the email templates
    once, so every pool process starts its first chunk at a slot warm (the first chunk waited
    2-3 s for them under load in benchmarks/production.py)."""
    settings = current_settings()
    try:
        get_backend(settings)
        renderer = shared_renderer(settings)
        for name in renderer.env.list_templates():
            renderer.env.get_template(name)
    except Exception:  # a bad template or setting shows in the first chunk's outcome instead
        log.warning("warm-up before the pool start failed", exc_info=True)


def settle_process() -> None:
    """A new pool process: fresh DB connections, and the start-up heap out of the collector's way.

    Never share pooled DB connections across fork. gc.freeze() moves the ~100k objects that
    Celery, SQLAlchemy and the app leave at start-up into the permanent generation, so the
    collections a 1,000-recipient chunk triggers no longer walk them: a third of `plan`'s CPU
    and a tenth of `send_chunk`'s went to those walks. Garbage made later is collected as usual,
    in larger steps (core.heap).
    """
    dispose_all()
    settle_heap()


# --- issue 16: logs, metrics files, heartbeats, beat's sign of life ----------------------

_heartbeat: list[liveness.Heartbeat] = []


@signals.setup_logging.connect
def _logging(**_: Any) -> None:
    logs.configure(get_settings().log_format)


@signals.worker_init.connect
def _metrics_files(**_: Any) -> None:
    metrics.use_directory(get_settings())  # before the pool forks: every process writes files


@signals.worker_ready.connect
def _start_heartbeat(sender: Any = None, **_: Any) -> None:
    settings = get_settings()
    redis = RedisQueue(settings).redis
    hostname = str(getattr(sender, "hostname", None) or f"worker@{os.uname().nodename}")

    def watch() -> None:  # the settings as they are at each beat of the heart
        alerts.watch(current_settings(), redis)

    _heartbeat.append(
        liveness.Heartbeat(redis, settings.redis_prefix, hostname, also=watch).start()
    )


@signals.worker_shutdown.connect
def _stop_heartbeat(**_: Any) -> None:
    while _heartbeat:
        _heartbeat.pop().stop()


@signals.before_task_publish.connect
def _beat_alive(sender: str | None = None, **_: Any) -> None:
    """Beat sent a tick: note it, and look for problems (it sees a missing worker)."""
    if sender != "newsletter.tick" or not _in_beat:
        return
    settings = current_settings()
    try:
        redis = RedisQueue(settings).redis
        liveness.record_beat(redis, settings.redis_prefix)
        alerts.watch(settings, redis)
    except Exception:
        log.exception("beat: recording liveness failed")
