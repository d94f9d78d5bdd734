"""The shared SendGrid send budget: the Lua bucket on real Redis (7 and the embedded 6.2), and
two backends in two threads against a stand-in with a fixed budget per window."""

from __future__ import annotations

import datetime as dt
import logging
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from sendgrid_fake import FakeSendGrid
from test_delivery_sendgrid import article, people, sg_settings

from newsletter.core.config import Settings
from newsletter.mail.backends.sendgrid import SendGridBackend
from newsletter.mail.backends.throttle import Throttle, parse_headers
from newsletter.mail.message import Accepted, Recipient, RetryLater

pytestmark = pytest.mark.both_redis

START = 1_999_999_800.0  # a whole multiple of every window used here (60 s and less)


class ManualClock:
    """Time that moves only when someone sleeps: shared by the throttles and the stand-in."""

    def __init__(self, start: float = START) -> None:
        self.now = start
        self.lock = threading.Lock()
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        with self.lock:
            return self.now

    def sleep(self, seconds: float) -> None:
        with self.lock:
            self.now += seconds
            self.sleeps.append(seconds)
        time.sleep(0.001)  # let the other thread run (its answer may be what we wait for)

    def until(self, moment: float) -> None:
        with self.lock:
            self.now = max(self.now, moment)


def headers(remaining: int, reset: float, limit: int = 10) -> dict[str, str]:
    return {
        "X-RateLimit-Limit": str(limit),
        "X-RateLimit-Remaining": str(remaining),
        "X-RateLimit-Reset": str(int(reset)),
    }


@pytest.fixture
def client(redis_server_url: str) -> Iterator[redis.Redis]:
    c = redis.Redis.from_url(redis_server_url, decode_responses=True)
    yield c
    c.close()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


def bucket(client: redis.Redis, prefix: str, clock: ManualClock, **kw: float) -> Throttle:
    return Throttle(client, f"{prefix}sendgrid:ratelimit", clock=clock, sleep=clock.sleep, **kw)


# --- the bucket --------------------------------------------------------------------------------


def test_no_headers_seen_means_no_throttling(
    client: redis.Redis, redis_prefix: str, clock: ManualClock
) -> None:
    b = bucket(client, redis_prefix, clock)
    turns = [b.acquire() for _ in range(50)]
    assert all(t.go and t.ticket for t in turns)
    b.record({"X-Message-Id": "abc"}, turns[0].ticket)  # an answer without X-RateLimit-*
    assert b.acquire().go and clock.sleeps == []


def test_budget_from_headers_counts_requests_in_flight_and_refills_at_reset(
    client: redis.Redis, redis_prefix: str, clock: ManualClock
) -> None:
    b = bucket(client, redis_prefix, clock)
    reset = START + 10
    b.record(headers(2, reset))
    first, second = b.take(), b.take()
    assert first[0] and second[0]  # two tokens, both on their way
    assert b.take() == (None, 10.0)  # nothing left: wait for the reset
    b.record(headers(1, reset), first[0])
    b.record(headers(0, reset), second[0])
    clock.until(START + 4)
    assert b.take() == (None, 6.0)
    clock.until(reset)  # the provider's window is over: its limit is back
    assert all(b.take()[0] for _ in range(10))
    ticket, wait = b.take()  # the whole limit is on its way: wait a moment for answers
    assert ticket is None and wait == pytest.approx(0.05)


def test_late_answers_never_raise_the_budget(
    client: redis.Redis, redis_prefix: str, clock: ManualClock
) -> None:
    b = bucket(client, redis_prefix, clock)
    b.record(headers(0, START + 10))
    b.record(headers(3, START + 10))  # an answer that left the provider earlier
    b.record(headers(5, START + 5))  # about an older window
    assert b.take() == (None, 10.0)
    b.record(headers(1, START + 20))  # a newer window replaces the old one
    assert b.take()[0] and b.take() == (None, 20.0)


def test_acquire_waits_up_to_the_cap_else_gives_the_reset(
    client: redis.Redis, redis_prefix: str, clock: ManualClock
) -> None:
    b = bucket(client, redis_prefix, clock, max_wait=5.0)
    b.record(headers(0, START + 3))
    assert b.acquire().go and clock.sleeps == [3.0]
    b.record(headers(0, START + 60))
    turn = b.acquire()
    assert not turn.go and turn.retry_at == START + 60 and clock.sleeps == [3.0]


def test_two_buckets_on_one_key_act_as_one(
    client: redis.Redis, redis_server_url: str, redis_prefix: str, clock: ManualClock
) -> None:
    other_client = redis.Redis.from_url(redis_server_url)  # another connection, bytes replies
    a, b = bucket(client, redis_prefix, clock), bucket(other_client, redis_prefix, clock)
    a.record(headers(4, START + 30))
    taken = [t.take()[0] for t in (a, b, a, b)]
    assert all(taken)
    assert a.take() == (None, 30.0) and b.take() == (None, 30.0)
    for ticket in taken[:2]:
        b.record(headers(2, START + 30), ticket)  # two answered, two still on their way
    assert a.take() == (None, 30.0)
    other_client.close()


def test_a_dead_workers_ticket_expires(
    client: redis.Redis, redis_prefix: str, clock: ManualClock
) -> None:
    b = bucket(client, redis_prefix, clock, ticket_seconds=20.0)
    b.record(headers(1, START + 60))
    assert b.take()[0]  # this worker dies before the answer
    assert b.take() == (None, 60.0)
    clock.until(START + 21)
    assert b.take()[0]


def test_prefix_separates_budgets(
    client: redis.Redis, redis_prefix: str, clock: ManualClock
) -> None:
    bucket(client, redis_prefix, clock).record(headers(0, START + 10))
    assert bucket(client, f"{redis_prefix}other:", clock).take()[0]
    assert set(client.keys(f"{redis_prefix}*")) >= {f"{redis_prefix}sendgrid:ratelimit"}


@pytest.mark.parametrize(
    "raw",
    [
        {},
        {"X-RateLimit-Remaining": "3"},
        {"X-RateLimit-Remaining": "x", "X-RateLimit-Reset": "1"},
        {"X-RateLimit-Remaining": "-1", "X-RateLimit-Reset": "1"},
        {"X-RateLimit-Remaining": "1", "X-RateLimit-Reset": "nan"},
        None,
    ],
)
def test_unusable_headers_are_ignored(raw: dict[str, str] | None) -> None:
    assert parse_headers(raw) is None


def test_headers_are_read_in_any_letter_case() -> None:
    raw = {"x-ratelimit-limit": "600", "x-ratelimit-remaining": "7", "x-ratelimit-reset": "99"}
    assert parse_headers(raw) == (600, 7, 99.0)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class DeadRedis:
    """A port that accepts connections and closes them at once: counts the attempts."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.server.getsockname()[1])
        self.attempts = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            self.attempts += 1
            conn.close()


def test_unreachable_redis_never_blocks_and_logs_once(
    caplog: pytest.LogCaptureFixture, clock: ManualClock
) -> None:
    dead = DeadRedis()
    client = redis.Redis(port=dead.port, socket_connect_timeout=0.5, retry=Retry(NoBackoff(), 0))
    b = Throttle(client, "nl:sendgrid:ratelimit", clock=clock, sleep=clock.sleep)
    with caplog.at_level(logging.INFO, logger="newsletter.mail.backends.throttle"):
        turns = [b.acquire() for _ in range(5)]
        b.record(headers(0, START + 10), turns[0].ticket)
        tried = dead.attempts
        assert tried == 1  # after the first failure Redis is left alone for a while
        assert all(t.go for t in turns) and clock.sleeps == []
        clock.until(START + 31)
        assert b.acquire().go and dead.attempts > tried  # asked again later, still down
    dead.server.close()
    assert [r.levelname for r in caplog.records] == ["WARNING"]
    assert "unreachable" in caplog.records[0].message


# --- two backends against a stand-in with a budget ----------------------------------------------

LIMIT, WINDOW = 3, 4  # a window shorter than the wait cap: the workers sleep through it
WORKERS, SENDS = 2, 5  # each send: one request


def run_workers(
    backends: list[SendGridBackend], clock: ManualClock, *, retry: bool
) -> list[list[object]]:
    """Each worker sends SENDS small batches; with `retry`, what is RetryLater is sent again at
    its time (as the dispatcher would), until accepted."""
    results: list[list[object]] = [[] for _ in backends]
    errors: list[BaseException] = []

    def work(n: int, backend: SendGridBackend) -> None:
        try:
            for s in range(SENDS):
                pending: list[Recipient] = people(2, start=1000 * n + 10 * s)
                for _ in range(40):
                    outcomes = backend.send(article(), pending)
                    results[n].extend(outcomes)
                    later = [o for o in outcomes if isinstance(o, RetryLater)]
                    if not retry or not later:
                        break
                    clock.until(max(o.at for o in later).timestamp())
                    pending = [r for r, o in zip(pending, outcomes, strict=True) if o in later]
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n, b)) for n, b in enumerate(backends)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    assert not any(t.is_alive() for t in threads)
    return results


def test_two_throttled_workers_get_no_429_and_send_everyone_once(
    settings: Settings, clock: ManualClock
) -> None:
    with FakeSendGrid() as fake:
        fake.budget(LIMIT, WINDOW, clock=clock)
        s = sg_settings(settings, fake.url)
        backends = [
            SendGridBackend(s, throttle=Throttle.for_settings(s, clock=clock, sleep=clock.sleep))
            for _ in range(WORKERS)
        ]
        run_workers(backends, clock, retry=True)

        assert fake.throttled == [] and fake.problems == []
        sent = Counter(e for r in fake.accepted for e in r.emails)
        assert len(sent) == WORKERS * SENDS * 2 and set(sent.values()) == {1}
        assert clock.sleeps, "the workers waited for the provider's reset"
        # the stand-in counted every request in a window of its own clock: none over budget
        assert sum(fake.window_counts.values()) == WORKERS * SENDS
        assert max(fake.window_counts.values()) <= LIMIT


def test_without_the_throttle_the_same_load_collects_429s(
    settings: Settings, clock: ManualClock
) -> None:
    with FakeSendGrid() as fake:
        fake.budget(LIMIT, WINDOW, clock=clock)
        s = sg_settings(settings, fake.url)
        backends = [SendGridBackend(s, throttle=False) for _ in range(WORKERS)]
        results = run_workers(backends, clock, retry=False)

        # time stands still without sleeps: one window, everything beyond its budget is a 429
        assert len(fake.throttled) == WORKERS * SENDS - LIMIT
        assert len(fake.accepted) == LIMIT
        assert sum(isinstance(o, RetryLater) for r in results for o in r) == 2 * len(fake.throttled)


def test_budget_used_up_past_the_cap_retries_at_the_reset_without_a_request(
    settings: Settings, clock: ManualClock
) -> None:
    with FakeSendGrid() as fake:
        fake.budget(1, 60, clock=clock)
        s = sg_settings(settings, fake.url)
        backend = SendGridBackend(
            s, throttle=Throttle.for_settings(s, clock=clock, sleep=clock.sleep)
        )
        assert all(isinstance(o, Accepted) for o in backend.send(article(), people(2)))
        later = backend.send(article(), people(1500, start=10))  # two requests' worth
        assert len(fake.requests) == 1 and clock.sleeps == []
        reset = dt.datetime.fromtimestamp(START + 60, dt.UTC)
        assert {(type(o), getattr(o, "at", None)) for o in later} == {(RetryLater, reset)}, later[
            :1
        ]
        clock.until(START + 60)
        again = backend.send(article(), people(1, start=5000))
        assert all(isinstance(o, Accepted) for o in again) and fake.throttled == []


def test_backend_sends_when_redis_is_unreachable(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    with FakeSendGrid() as fake:
        fake.budget(100, 60)
        s = sg_settings(settings, fake.url, redis_url=f"redis://127.0.0.1:{closed_port()}/0")
        backend = SendGridBackend(s)  # the default throttle, from settings
        with caplog.at_level(logging.WARNING, logger="newsletter.mail.backends.throttle"):
            outcomes = [o for n in range(3) for o in backend.send(article(), people(2, 10 * n))]
        assert all(isinstance(o, Accepted) for o in outcomes) and len(fake.accepted) == 3
        warnings = [r for r in caplog.records if r.name == "newsletter.mail.backends.throttle"]
        assert len(warnings) == 1 and "unreachable" in warnings[0].message
