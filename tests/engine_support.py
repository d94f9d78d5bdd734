"""Helpers for the engine tests: series from schedules/, subscribers, ledger and outbox readers,
a scripted provider, and a Redis that loses this run's keys."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import secrets
import shutil
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import redis
from paths import ROOT
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from newsletter.content import series as content
from newsletter.core.config import ENV_PREFIX, Settings, get_settings
from newsletter.engine import schedule, series_queue
from newsletter.mail.message import Message, Outcome, Recipient
from newsletter.queue.dueset import RedisQueue
from newsletter.store import series as series_store
from newsletter.store.db import get_engine, session_scope
from newsletter.store.models import (
    ACTIVE,
    QUEUED,
    Delivery,
    Enrollment,
    Series,
    Subscriber,
    WaitingQueue,
)


def utc(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=dt.UTC)  # type: ignore[misc]


def cli_tick(now: dt.datetime) -> dict[str, int]:
    """`newsletter tick --now NOW --json` in this process (the CLI reads the NEWSLETTER_* the
    settings fixture exported): the counts it printed (due, sent, retry, skipped, failed)."""
    import json

    from typer.testing import CliRunner

    from newsletter.cli import app

    result = CliRunner().invoke(app, ["tick", "--now", now.isoformat(), "--json"])
    assert result.exit_code == 0, result.output
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


def ship(settings: Settings, now: dt.datetime, queue: bool = True) -> dict[str, int]:
    """Sync schedules/ and queue the shipped series (Myths, then Co-Created): slug -> id."""
    specs = content.load_all(settings.schedules_dir)
    with session_scope(settings.database_url) as session:
        series_store.sync(session, specs)
        if queue:
            for s in sorted(session.scalars(select(Series)), key=lambda s: s.order):
                series_queue.queue_series(session, s.slug, None, now)
        ids = {s.slug: s.id for s in session.scalars(select(Series))}
    with session_scope(settings.database_url) as session:
        RedisQueue(settings).rebuild(session)
    return ids


def add_person(
    settings: Settings,
    now: dt.datetime,
    zone: str = "Europe/London",
    *,
    name: str | None = "Anna",
    cadence: str = "weekly",
    slugs: list[str] | None = None,
    paused_until: dt.date | None = None,
) -> int:
    """An active (confirmed) subscriber enrolled at `now`; returns the subscriber id."""
    with session_scope(settings.database_url) as session:
        sub = Subscriber(
            public_id=secrets.token_hex(8),
            email=f"p{secrets.token_hex(4)}@example.org",
            email_key="",
            name=name,
            timezone=zone,
            status=ACTIVE,
            cadence=cadence,
            paused_until=paused_until,
            takes_new_series=True,
            consent_method="cli",
            consent_at=now,
            confirmed_at=now,
            created_at=now,
            updated_at=now,
        )
        sub.email_key = sub.email
        session.add(sub)
        session.flush()
        changed = schedule.enroll(session, sub, now, series_slugs=slugs)
        ids = [e.id for e in changed]
        session.flush()
        RedisQueue(settings).sync_enrollments(session, ids)
        return sub.id


def ledger(settings: Settings) -> list[tuple[int | None, int, int, str, dt.datetime | None]]:
    with session_scope(settings.database_url) as session:
        return [
            (d.subscriber_id, d.series_id, d.part_number, d.status, d.sent_at)
            for d in session.scalars(select(Delivery).order_by(Delivery.id))
        ]


def deliveries_of(settings: Settings, emails: list[str]) -> list[Delivery]:
    """The ledger rows of the readers with these addresses."""
    with session_scope(settings.database_url) as session:
        return list(
            session.scalars(
                select(Delivery)
                .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
                .where(Subscriber.email.in_(emails))
            )
        )


def enrollments(settings: Settings, subscriber_id: int) -> list[Enrollment]:
    with session_scope(settings.database_url) as session:
        return list(
            session.scalars(
                select(Enrollment)
                .where(Enrollment.subscriber_id == subscriber_id)
                .order_by(Enrollment.position)
            )
        )


def outbox_mails(settings: Settings) -> list[Any]:
    folder = Path(settings.outbox_dir)
    if not folder.exists():
        return []
    return [
        email.message_from_bytes(p.read_bytes(), policy=email.policy.default)
        for p in sorted(folder.glob("*.eml"))
    ]


def enrollment_facts(e: Enrollment) -> tuple[object, ...]:
    """What enrolling decided for one enrollment: compared between two ways of enrolling."""
    return (e.series_id, e.position, e.next_part, e.next_due_at, e.state, e.not_before,
            e.created_at)  # fmt: skip


def delete_prefixed(url: str, prefix: str) -> int:
    """Delete every key under `prefix` on the Redis at `url` (never FLUSHDB: the machine's
    server is shared with other test runs); how many."""
    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
        return len(keys)
    finally:
        client.close()


def lose_redis(settings: Settings) -> None:
    """Redis loses everything this test holds (a restart without data, a flush): every key
    under the test's own prefix, and only those."""
    assert settings.redis_url and settings.redis_prefix
    assert delete_prefixed(settings.redis_url, settings.redis_prefix) > 0


class Scripted:
    """A provider double that answers from a script (the real backends have their own tests)."""

    name = "scripted"

    def __init__(self, answers: list[object]) -> None:
        self.answers = answers
        self.calls: list[list[str]] = []

    def send(self, message: Message, recipients: Sequence[Recipient]) -> list[Outcome]:
        self.calls.append([r.delivery_id for r in recipients])
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return [answer for _ in recipients]  # type: ignore[misc]


def use_backend(monkeypatch: pytest.MonkeyPatch, backend: Scripted) -> None:
    """Dispatch hands its recipients to `backend` (looked up on the module at call time)."""
    monkeypatch.setattr("newsletter.mail.backends.get_backend", lambda settings, name=None: backend)


def own_templates(settings: Settings, folder: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """`settings` with a copy of templates/ in `folder` the test may edit (the environment,
    and so the process settings the dashboard and doctor read, names it too)."""
    shutil.copytree(ROOT / "templates", folder)
    monkeypatch.setenv(f"{ENV_PREFIX}TEMPLATES_DIR", str(folder))
    get_settings.cache_clear()
    return settings.model_copy(update={"templates_dir": folder})


def recount_queues(session: Session) -> dict[int, str]:
    """Each reader's queued places as the triggers write them, recounted here from enrollments."""
    out: dict[int, list[str]] = {}
    rows = session.execute(
        select(Enrollment.subscriber_id, Enrollment.series_id, Enrollment.next_part,
               Enrollment.not_before)
        .where(Enrollment.state == QUEUED)
        .order_by(Enrollment.subscriber_id, Enrollment.position, Enrollment.id)
    )  # fmt: skip
    for sid, series_id, part, start in rows:
        out.setdefault(sid, []).append(f"{series_id}:{part}:{'' if start is None else start}")
    return {sid: ";".join(items) for sid, items in out.items()}


def kept_queues(session: Session) -> dict[int, str]:
    """What the database keeps in waiting_queues (migration 0020's triggers)."""
    return dict(session.execute(select(WaitingQueue.subscriber_id, WaitingQueue.places)).all())


def queues_kept(database_url: str) -> dict[int, str]:
    """The kept waiting queues, asserted equal to a recount of the queued places."""
    with session_scope(database_url) as session:
        kept = kept_queues(session)
        assert kept == recount_queues(session)
        return kept


def wait_for_a_lock_wait(database_url: str, polls: int = 3000) -> bool:
    """A barrier, not a sleep: True once PostgreSQL shows a session of this database waiting
    for a lock (polled every 10 ms, `polls` times at most); False if none ever did."""
    with get_engine(database_url).connect() as watcher:
        for _ in range(polls):
            waiting = watcher.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                    " AND wait_event_type = 'Lock'"
                )
            ).scalar()
            watcher.rollback()  # pg_stat_activity is a snapshot per transaction
            if waiting:
                return True
            threading.Event().wait(0.01)
    return False
