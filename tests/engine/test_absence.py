"""Evidence of absence (engine.absence, applied by engine.reconcile): a handed chunk the provider
never took is sent again once its events for later mail arrived, every webhook post since was
answered 2xx and the settle window has passed; otherwise the 24 h rule stays."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest
from engine_support import deliveries_of, ship, utc
from fastapi.testclient import TestClient
from sendgrid_events import EventPoster
from sendgrid_fake import API_KEY, FakeSendGrid
from sqlalchemy import select
from time_machine import TimeMachineFixture

from newsletter.core.config import Settings, get_settings, load_settings
from newsletter.engine import events
from newsletter.engine.absence import (
    ABSENT_NOTE,
    BLOCKED_BY_POST,
    UNKNOWN_RESEND_AFTER,
    Post,
    judge,
)
from newsletter.engine.reconcile import reconcile
from newsletter.engine.tick import tick
from newsletter.store.db import session_scope
from newsletter.store.models import CLAIMED, SENT, Delivery
from newsletter.web.app import create_app

T0 = utc(2027, 3, 1, 9)
WINDOW = dt.timedelta(minutes=15)


def at(minutes: float) -> dt.datetime:
    return T0 + dt.timedelta(minutes=minutes)


# --- the rule --------------------------------------------------------------------------------


def test_a_chunk_without_events_while_later_mail_is_reported_is_resent_after_the_window() -> None:
    verdict = judge(at(0), False, [Post(at(1), True, at(0.5))], WINDOW)
    assert (verdict.absent, verdict.resend_at) == (True, at(15))
    assert not verdict.due(at(14.9)) and verdict.due(at(15))


def test_mail_handed_in_the_same_moment_counts_as_later() -> None:
    """An inline tick stamps all its chunks with its own time: a sibling chunk's events show
    the provider got past this one."""
    assert judge(at(0), False, [Post(at(1), True, at(0))], WINDOW).absent


def test_an_event_for_any_row_means_the_chunk_was_taken() -> None:
    verdict = judge(at(0), True, [Post(at(1), True, at(0.5))], WINDOW)
    assert (verdict.absent, verdict.resend_at) == (False, at(0) + UNKNOWN_RESEND_AFTER)


def test_a_post_not_answered_2xx_since_the_hand_over_blocks_the_rule() -> None:
    posts = [Post(at(1), False, None), Post(at(2), True, at(1.5))]
    verdict = judge(at(0), False, posts, WINDOW)
    assert (verdict.absent, verdict.reason) == (False, BLOCKED_BY_POST)
    # a failed post before the hand-over says nothing about this chunk
    assert judge(at(0), False, [Post(at(-1), False, None), *posts[1:]], WINDOW).absent


def test_a_failed_post_stops_blocking_once_its_retry_with_the_same_body_is_answered() -> None:
    """SendGrid retries a refused post with the same batch: a 2xx answer to the same body stored
    the events the failed one carried."""
    failed, later = Post(at(1), False, None, "batch-a"), Post(at(2), True, at(1.5), "batch-b")
    assert judge(at(0), False, [failed, later], WINDOW).reason == BLOCKED_BY_POST
    retried = Post(at(5), True, at(0.5), "batch-a")
    assert judge(at(0), False, [failed, later, retried], WINDOW).absent


def test_a_different_body_or_an_unread_one_does_not_clear_a_failed_post() -> None:
    later = Post(at(2), True, at(1.5), "batch-b")
    other = [Post(at(1), False, None, "batch-a"), later]
    assert judge(at(0), False, other, WINDOW).reason == BLOCKED_BY_POST
    unread = [Post(at(1), False, None, None), later, Post(at(3), True, at(1.5), None)]
    assert judge(at(0), False, unread, WINDOW).reason == BLOCKED_BY_POST
    failed_again = [Post(at(1), False, None, "a"), later, Post(at(3), False, None, "a")]
    assert judge(at(0), False, failed_again, WINDOW).reason == BLOCKED_BY_POST


def test_without_reports_on_later_mail_the_24_hour_rule_stays() -> None:
    earlier_only = [Post(at(1), True, at(-0.5))]  # events, but for mail handed before
    assert not judge(at(0), False, earlier_only, WINDOW).absent
    assert not judge(at(0), False, [], WINDOW).absent  # no webhook at all
    assert judge(at(0), False, [], WINDOW).resend_at == at(0) + UNKNOWN_RESEND_AFTER


# --- through the stand-in, the webhook endpoint and reconcile ---------------------------------


@pytest.fixture
def flow(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, time_machine: TimeMachineFixture
) -> Iterator[tuple[Settings, FakeSendGrid, EventPoster]]:
    """SendGrid (the stand-in) with its signed events posted to the app; 3 chunks of 2 due."""
    from newsletter.mail.backends import sendgrid

    monkeypatch.setattr(sendgrid, "TIMEOUT_SECONDS", 0.5)
    with FakeSendGrid() as fake:
        clients: list[TestClient] = []

        def post(raw: bytes, headers: dict[str, str]) -> int:
            return clients[0].post("/webhooks/sendgrid", content=raw, headers=headers).status_code

        poster = EventPoster(fake, post)
        for name, value in {
            "MAIL_BACKEND": "sendgrid",
            "SENDGRID_HOST": fake.url,
            "SENDGRID_API_KEY": API_KEY,
            "SENDGRID_WEBHOOK_PUBLIC_KEY": poster.public_key,
            "BATCH_SIZE": "2",
        }.items():
            monkeypatch.setenv(f"NEWSLETTER_{name}", value)
        get_settings.cache_clear()
        app_settings = load_settings()
        with TestClient(create_app(app_settings), raise_server_exceptions=False) as client:
            clients.append(client)
            yield app_settings, fake, poster
        get_settings.cache_clear()


def _due(settings: Settings, time_machine: TimeMachineFixture) -> dt.datetime:
    """Six readers due at one slot; the test's clock stands there (hand-overs are stamped with
    the later of the tick's time and the clock)."""
    from test_delivery_flow import next_due, people

    ship(settings, T0)
    people(settings, 6, T0)
    due = next_due(settings)
    time_machine.move_to(due, tick=True)
    return due


def _at(time_machine: TimeMachineFixture, due: dt.datetime, minutes: float) -> dt.datetime:
    """`minutes` after the slot, the test clock moved there."""
    moment = due + dt.timedelta(minutes=minutes)
    time_machine.move_to(moment, tick=True)
    return moment


def _copies(fake: FakeSendGrid) -> dict[str, int]:
    counts: dict[str, int] = {}
    for request in fake.accepted:
        for email in request.emails:
            counts[email] = counts.get(email, 0) + 1
    return counts


def test_a_request_the_provider_never_took_is_sent_again_after_the_window_once(
    flow: tuple[Settings, FakeSendGrid, EventPoster], time_machine: TimeMachineFixture
) -> None:
    settings, fake, poster = flow
    due = _due(settings, time_machine)
    fake.hang_until_released(accept=False)  # the first request hangs past the timeout
    first = tick(settings, due)
    fake.release()
    assert (first.sent, first.retry) == (4, 2)
    lost = fake.requests[0].emails
    assert poster.flush() == 4  # the other chunks' events flow
    early = reconcile(settings, _at(time_machine, due, 14))
    assert (early.absent, early.unknown) == (0, 2)  # inside the window: waits
    report = reconcile(settings, _at(time_machine, due, 16))
    assert (report.absent, report.resent, report.unknown) == (2, 0, 0)
    assert {d.last_error for d in deliveries_of(settings, lost)} == {ABSENT_NOTE}
    assert tick(settings, _at(time_machine, due, 16.1)).sent == 2
    assert set(_copies(fake).values()) == {1} and len(_copies(fake)) == 6
    # once: nothing more later, whatever reconcile sees
    poster.flush()
    assert reconcile(settings, _at(time_machine, due, 40)).absent == 0
    assert reconcile(settings, _at(time_machine, due, 30 * 60)).resent == 0
    assert {d.status for d in deliveries_of(settings, lost)} == {SENT}


def _accepted_but_silent(
    settings: Settings, fake: FakeSendGrid, poster: EventPoster, time_machine: TimeMachineFixture
) -> tuple[dt.datetime, list[str]]:
    """The first request is taken but its answer is lost (outcome unknown) and its events are
    held back; the others' arrive. The slot and the silent chunk's emails."""
    due = _due(settings, time_machine)
    fake.hang_until_released(accept=True)
    assert tick(settings, due).sent == 4
    fake.release()
    poster.hold(0)
    return due, fake.requests[0].emails


def _failing_first(monkeypatch: pytest.MonkeyPatch) -> None:
    """Our endpoint fails the first post it handles (the provider will post it again)."""
    real = events.process_sendgrid
    calls = iter([RuntimeError("database is locked")])

    def flaky(*args: object, **kwargs: object) -> events.Report:
        failure = next(calls, None)
        if failure is not None:
            raise failure
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(events, "process_sendgrid", flaky)


def test_a_failed_webhook_post_blocks_the_resend(
    flow: tuple[Settings, FakeSendGrid, EventPoster],
    monkeypatch: pytest.MonkeyPatch,
    time_machine: TimeMachineFixture,
) -> None:
    """Our endpoint failed one post (the provider will post it again): absence proves nothing
    until that post comes again and is answered."""
    settings, fake, poster = flow
    due, silent = _accepted_but_silent(settings, fake, poster, time_machine)
    _failing_first(monkeypatch)
    poster.batch = 2  # one post for each chunk's events
    assert poster.flush() == 2 and poster.answers == [500, 200]
    report = reconcile(settings, _at(time_machine, due, 20))
    assert (report.absent, report.unknown) == (0, 2)
    poster.unhold(0)  # the retry comes with the late events: settled by them, never sent twice
    assert poster.flush() == 4 and poster.answers[2:] == [200, 200]
    assert {d.status for d in deliveries_of(settings, silent)} == {SENT}
    assert reconcile(settings, _at(time_machine, due, 30 * 60)).resent == 0
    assert set(_copies(fake).values()) == {1}


def test_the_block_clears_when_the_retry_of_the_same_batch_is_answered(
    flow: tuple[Settings, FakeSendGrid, EventPoster],
    monkeypatch: pytest.MonkeyPatch,
    time_machine: TimeMachineFixture,
) -> None:
    """One failed post does not send a chunk the provider never took back to the 24 h rule:
    its retry (the same body) answered 2xx lifts the block, and the chunk is sent again."""
    settings, fake, poster = flow
    due = _due(settings, time_machine)
    fake.hang_until_released(accept=False)
    assert tick(settings, due).retry == 2
    fake.release()
    lost = fake.requests[0].emails
    _failing_first(monkeypatch)
    poster.batch = 2
    assert poster.flush() == 2 and poster.answers == [500, 200]
    blocked = reconcile(settings, _at(time_machine, due, 16))
    assert (blocked.absent, blocked.unknown) == (0, 2)
    assert poster.flush() == 2 and poster.answers[2:] == [200]  # the same batch, posted again
    report = reconcile(settings, _at(time_machine, due, 17))
    assert (report.absent, report.unknown) == (2, 0)
    assert {d.last_error for d in deliveries_of(settings, lost)} == {ABSENT_NOTE}
    assert tick(settings, _at(time_machine, due, 17.1)).sent == 2
    assert set(_copies(fake).values()) == {1} and len(_copies(fake)) == 6


def test_residual_risk_events_later_than_the_window_with_every_post_answered_mean_a_second_copy(
    flow: tuple[Settings, FakeSendGrid, EventPoster], time_machine: TimeMachineFixture
) -> None:
    """The documented residual risk: the provider took the chunk, but its events come after
    the settle window while every post was answered 2xx: those readers get a second copy, and
    their ledger rows say why."""
    settings, fake, poster = flow
    due, silent = _accepted_but_silent(settings, fake, poster, time_machine)
    assert poster.flush() == 4
    assert reconcile(settings, _at(time_machine, due, 16)).absent == 2
    assert tick(settings, _at(time_machine, due, 16.1)).sent == 2
    copies = _copies(fake)
    assert {copies[e] for e in silent} == {2}  # the second copy
    assert {copies[e] for e in copies if e not in silent} == {1}
    rows = deliveries_of(settings, silent)
    assert {(d.status, d.last_error, d.attempts) for d in rows} == {(SENT, ABSENT_NOTE, 2)}
    poster.unhold(0)
    poster.flush()  # the late events change nothing more
    assert {d.status for d in deliveries_of(settings, silent)} == {SENT}
    assert reconcile(settings, _at(time_machine, due, 30 * 60)).resent == 0
    assert len(fake.accepted) == 4


def test_rows_still_handed_are_never_resent_by_absence_without_a_webhook(
    flow: tuple[Settings, FakeSendGrid, EventPoster], time_machine: TimeMachineFixture
) -> None:
    """No events at all (no webhook): the 24 h rule, unchanged."""
    settings, fake, _ = flow
    due = _due(settings, time_machine)
    fake.hang_until_released(accept=False)
    assert tick(settings, due).retry == 2
    fake.release()
    report = reconcile(settings, _at(time_machine, due, 120))
    assert (report.absent, report.resent, report.unknown) == (0, 0, 2)
    with session_scope(settings.database_url) as session:
        assert session.scalar(select(Delivery.status).where(Delivery.status == CLAIMED))


def test_readers_waiting_for_the_answer_are_on_the_dashboard_and_metrics(
    flow: tuple[Settings, FakeSendGrid, EventPoster], time_machine: TimeMachineFixture
) -> None:
    """How many wait, since when, and when they are sent again if no answer comes."""
    from web_helpers import as_admin, signed_in

    from newsletter.engine.reconcile import waiting_for_provider
    from newsletter.web.dates import format_clock, format_local

    settings, fake, poster = flow
    due = _due(settings, time_machine)
    fake.hang_until_released(accept=False)
    tick(settings, due)
    fake.release()
    moment = _at(time_machine, due, 5)
    admin = as_admin(settings)
    zone = settings.default_timezone
    with session_scope(settings.database_url) as session:
        before = waiting_for_provider(settings, session, moment)
    assert before is not None and (before.readers, before.since) == (2, due)
    assert (before.next.absent, before.next.resend_at) == (False, due + UNKNOWN_RESEND_AFTER)
    c, _ = signed_in(admin)
    page = " ".join(c.get("/admin").text.split())
    assert "2 readers waiting for the provider's answer" in page
    assert f"Sent again at {format_local(due + UNKNOWN_RESEND_AFTER, zone)} if no answer" in page
    poster.flush()  # the other chunks' events: the absence rule's time applies
    page = " ".join(c.get("/admin").text.split())
    assert f"sent again at {format_clock(due + WINDOW, zone)} if no answer comes" in page
    time_machine.move_to(moment, tick=False)  # the scrape reads the clock: stopped here
    metrics = TestClient(create_app(admin), client=("127.0.0.1", 5000)).get("/metrics").text
    assert "newsletter_waiting_for_provider 2.0" in metrics
    assert "newsletter_waiting_for_provider_age_seconds 300.0" in metrics
    assert "newsletter_waiting_resend_in_seconds 600.0" in metrics
    reconcile(settings, _at(time_machine, due, 16))
    tick(settings, _at(time_machine, due, 16.1))
    assert "waiting for the provider" not in c.get("/admin").text
