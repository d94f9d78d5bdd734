"""Prometheus metrics: what the task wrappers and the webhook count, and the /metrics page.

Counters and histograms are recorded where the work's outcome is already known (the Celery task
wrappers in tasks.py, from the summaries the engine returns; the webhook handler), so the
engine's hot paths stay untouched. Queue gauges (due-set size, oldest due item's age, seconds
since the last tick, live workers) are read from Redis when /metrics is scraped.

Multi-process mode: a Celery worker's pool processes cannot share one in-memory registry, so
`newsletter worker` writes its values to files in PROMETHEUS_MULTIPROC_DIR (default var/metrics;
`use_directory` at worker start, before any value exists). /metrics adds them to the web
process's own values (webhook events). The web and the workers must share var/ for that: true
for `newsletter run` and one machine; with separate containers, mount the same volume.

Every metric carries at least one label: a labelled metric creates its value files lazily, at
the first `.labels()` call, so switching to multi-process mode at worker start is enough.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, values
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector

from newsletter.core.config import Settings
from newsletter.queue import liveness

log = logging.getLogger(__name__)

CONTENT_TYPE = CONTENT_TYPE_LATEST
ENV = "PROMETHEUS_MULTIPROC_DIR"
OUTCOMES = ("sent", "retry", "skipped", "failed")
# SendGrid's event types; anything else is counted as "other" (a stranger's post must not be
# able to mint label values).
EVENT_TYPES = frozenset(
    {
        "processed",
        "dropped",
        "delivered",
        "deferred",
        "bounce",
        "blocked",
        "open",
        "click",
        "spamreport",
        "unsubscribe",
        "group_unsubscribe",
        "group_resubscribe",
    }
)

SENDS = Counter(
    "newsletter_sends",
    "Article deliveries handled by send tasks, by outcome (sent, retry, skipped, failed).",
    ["outcome"],
)
RETRIES = Counter(
    "newsletter_retries",
    "Deliveries put back to be tried again later: by a send task (provider pushed back, halted) "
    "or by reconcile (requeued, resent, overdue_requeued).",
    ["kind"],
)
CHUNK_SECONDS = Histogram(
    "newsletter_send_chunk_seconds",
    "Time one send task took for its chunk, the provider call included (provider latency "
    "per chunk of up to 1,000 recipients).",
    ["backend"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
)
TICK_SECONDS = Histogram(
    "newsletter_tick_seconds",
    "Time one tick took to claim what is due and hand it on.",
    ["source"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
TICK_DUE = Counter("newsletter_tick_due", "Enrollments claimed as due by ticks.", ["source"])
RECONCILED = Counter(
    "newsletter_reconciled",
    "What reconcile settled, by result (requeued, confirmed_sent, resent, unknown, "
    "overdue_requeued, poisoned).",
    ["result"],
)
RETRIED_BY_RECONCILE = ("requeued", "resent", "overdue_requeued")
WEBHOOK_EVENTS = Counter(
    "newsletter_webhook_events", "Provider events received by the webhook, by type.", ["type"]
)


def directory(settings: Settings) -> Path:
    """Where multi-process values live: PROMETHEUS_MULTIPROC_DIR, else var/metrics."""
    configured = os.environ.get(ENV)
    return Path(configured) if configured else Path(settings.var_dir) / "metrics"


def use_directory(settings: Settings) -> Path:
    """Switch this process (and the pool processes it forks) to multi-process values."""
    path = directory(settings).resolve()
    path.mkdir(parents=True, exist_ok=True)
    os.environ[ENV] = str(path)
    values.ValueClass = values.get_value_class()
    return path


def multiprocess_mode() -> bool:
    return bool(os.environ.get(ENV)) and values.ValueClass is not values.MutexValue


# --- recording --------------------------------------------------------------------------


def chunk_sent(summary: Mapping[str, int], seconds: float, backend: str) -> None:
    """One send task's summary (TickSummary.as_dict()) and how long it took."""
    for outcome in OUTCOMES:
        count = int(summary.get(outcome, 0))
        if count:
            SENDS.labels(outcome).inc(count)
    if summary.get("retry"):
        RETRIES.labels("send").inc(int(summary["retry"]))
    CHUNK_SECONDS.labels(backend).observe(seconds)


def ticked(summary: Mapping[str, int], seconds: float, source: str) -> None:
    """One tick that ran (source: beat or manual)."""
    TICK_SECONDS.labels(source).observe(seconds)
    TICK_DUE.labels(source).inc(int(summary.get("due", 0)))


def reconciled(report: Mapping[str, int]) -> None:
    """One reconcile's report; what it put back to be sent again also counts as retries."""
    for result, count in report.items():
        if count:
            RECONCILED.labels(result).inc(int(count))
            if result in RETRIED_BY_RECONCILE:
                RETRIES.labels(result).inc(int(count))


def webhook_events(payload: Iterable[Any]) -> None:
    """Count a posted batch of provider events by type."""
    counts: dict[str, int] = {}
    for event in payload:
        kind = event.get("event") if isinstance(event, dict) else None
        label = kind if isinstance(kind, str) and kind in EVENT_TYPES else "other"
        counts[label] = counts.get(label, 0) + 1
    for label, count in counts.items():
        WEBHOOK_EVENTS.labels(label).inc(count)


# --- the page ---------------------------------------------------------------------------


class _Queue:
    """Gauges read from Redis at scrape time."""

    def __init__(self, redis: Any, prefix: str) -> None:
        self.redis, self.prefix = redis, prefix

    def collect(self) -> Iterator[Metric]:
        try:
            reading = liveness.read(self.redis, self.prefix)
            due_size = int(self.redis.zcard(f"{self.prefix}due"))
        except Exception as exc:  # Redis down: /healthz says so; the counters still answer
            log.warning("metrics: queue gauges unreadable: %s", type(exc).__name__)
            return
        gauges: list[tuple[str, str, float | None]] = [
            ("newsletter_due_set_size", "Enrollments in the Redis due set.", due_size),
            (
                "newsletter_due_now",
                "Enrollments due now and not yet claimed.",
                reading.backlog.due_now,
            ),
            (
                "newsletter_leased",
                "Enrollments claimed and not yet settled.",
                reading.backlog.leased,
            ),
            (
                "newsletter_oldest_due_age_seconds",
                "Seconds the oldest due enrollment has waited (0 when nothing is due).",
                reading.backlog.oldest_due_age or 0.0,
            ),
            ("newsletter_live_workers", "Workers that heartbeat recently.", len(reading.workers)),
            (
                "newsletter_beat_age_seconds",
                "Seconds since beat last sent or ran a tick (absent before the first).",
                reading.beat_age,
            ),
            ("newsletter_can_send", "1 when beat and workers can send, else 0.", reading.can_send),
        ]
        for name, doc, value in gauges:
            if value is not None:
                yield GaugeMetricFamily(name, doc, value=float(value))


class _Waiting:
    """Readers waiting for the provider's answer, read from the ledger at scrape time."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def collect(self) -> Iterator[Metric]:
        from newsletter.core.timing import utcnow
        from newsletter.engine.reconcile import waiting_for_provider
        from newsletter.store.db import session_scope

        now = utcnow()
        try:
            with session_scope(self.settings.database_url) as session:
                waiting = waiting_for_provider(self.settings, session, now)
        except Exception as exc:  # the database is down: /healthz says so
            log.warning("metrics: waiting gauges unreadable: %s", type(exc).__name__)
            return
        readers = waiting.readers if waiting else 0
        yield GaugeMetricFamily(
            "newsletter_waiting_for_provider",
            "Readers whose mail was handed to the provider with no answer yet (outcome unknown).",
            value=float(readers),
        )
        if waiting is None:
            return
        yield GaugeMetricFamily(
            "newsletter_waiting_for_provider_age_seconds",
            "Seconds since the oldest of them was handed over.",
            value=(now - waiting.since).total_seconds(),
        )
        yield GaugeMetricFamily(
            "newsletter_waiting_resend_in_seconds",
            "Seconds until the first of them is sent again if no answer comes (0: at the next "
            "reconcile).",
            value=max(0.0, (waiting.next.resend_at - now).total_seconds()),
        )


class _Merged:
    """The process's own values plus the workers' files, one family per name (sums per labels)."""

    def __init__(self, sources: list[Any]) -> None:
        self.sources = sources

    def collect(self) -> Iterator[Metric]:
        families: dict[str, Metric] = {}
        totals: dict[tuple[str, str, tuple[tuple[str, str], ...]], float] = {}
        for source in self.sources:
            for family in source.collect():
                families.setdefault(
                    family.name, Metric(family.name, family.documentation, family.type)
                )
                for sample in family.samples:
                    key = (family.name, sample.name, tuple(sorted(sample.labels.items())))
                    totals[key] = totals.get(key, 0.0) + sample.value
        for (name, sample_name, labels), value in totals.items():
            families[name].add_sample(sample_name, dict(labels), value)
        yield from families.values()


class _Files:
    """The multi-process files of a directory (read fresh at every scrape)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def collect(self) -> Iterable[Metric]:
        return MultiProcessCollector(None, path=str(self.folder)).collect()


def page(settings: Settings, redis: Any) -> bytes:
    """The /metrics body: this process's values, the workers' files, the queue gauges."""
    sources: list[Any] = []
    folder = directory(settings)
    if multiprocess_mode():
        sources.append(_Files(folder))
    else:
        sources.append(REGISTRY)
        if folder.is_dir():
            sources.append(_Files(folder))
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Merged(sources))
    registry.register(_Queue(redis, settings.redis_prefix))
    registry.register(_Waiting(settings))
    return generate_latest(registry)
