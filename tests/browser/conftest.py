"""Browser fixtures: the shipped series in the test database, a real uvicorn server, Chromium."""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from browser_support import ADMIN_PASSWORD
from paths import free_port
from sendgrid_fake import FakeSendGrid
from servers import uvicorn_app
from typer.testing import CliRunner

from newsletter.cli import app
from newsletter.content import series as content
from newsletter.core.config import Settings, get_settings, load_settings
from newsletter.engine import series_queue
from newsletter.store import series as series_store
from newsletter.store.db import session_scope
from newsletter.store.models import Part, Series

CHROMIUM = "/usr/bin/chromium"
SETUP_RE = re.compile(r"(http://\S+/admin/setup/[A-Za-z0-9_-]+)")
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def load_shipped_series(settings: Settings, published: int = 1) -> None:
    """Sync schedules/ into the database, queue every series, mark the first parts published."""
    now = dt.datetime.now(dt.UTC)
    with session_scope(settings.database_url) as session:
        specs = content.load_all(settings.schedules_dir)
        series_store.sync(session, specs)
        for spec in sorted(specs, key=lambda s: (s.order or 0, s.slug)):
            series_queue.queue_series(session, spec.slug, None, now)
        for series in session.query(Series).all():
            for part in session.query(Part).filter(Part.series_id == series.id):
                if part.number <= published:
                    part.first_sent_at = now - dt.timedelta(days=3)


@pytest.fixture
def server(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[str, Settings]]:
    """A real uvicorn process serving the app; links in emails point at it."""
    port = free_port()
    monkeypatch.setenv("NEWSLETTER_PUBLIC_URL", f"http://127.0.0.1:{port}")
    served = load_settings()  # this test's settings agree with the server's
    load_shipped_series(served)
    with uvicorn_app(port, tmp_path / "uvicorn.log") as base:
        yield base, served


@pytest.fixture(scope="session")
def browser():  # type: ignore[no-untyped-def]
    if not Path(CHROMIUM).exists():
        if shutil.which("apt-get") and os.geteuid() == 0:
            subprocess.run(["apt-get", "install", "-y", "chromium"], check=False)
        if not Path(CHROMIUM).exists():
            pytest.skip("Debian's Chromium is not installed and apt-get could not install it")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield b
        b.close()


@pytest.fixture
def admin_server(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[str, Settings]]:
    """A real uvicorn process with the admin password ADMIN_PASSWORD; the series synced but
    not yet queued. Yields (base URL, the settings it serves with)."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    monkeypatch.setenv("NEWSLETTER_PUBLIC_URL", base)
    monkeypatch.setenv("NEWSLETTER_ADMIN_PASSWORD", ADMIN_PASSWORD)
    served = load_settings()
    with session_scope(served.database_url) as session:
        series_store.sync(session, content.load_all(served.schedules_dir))
    with uvicorn_app(port, tmp_path / "uvicorn.log", ready_path="/admin/login") as served_base:
        yield served_base, served


@pytest.fixture
def fresh_server(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[str, str]]:
    """A server after `newsletter init` with no admin password anywhere: (base URL, the
    setup link init printed). Fixtures that set NEWSLETTER_* go before it in the arguments."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    monkeypatch.setenv("NEWSLETTER_PUBLIC_URL", base)
    monkeypatch.delenv("NEWSLETTER_ADMIN_PASSWORD", raising=False)
    get_settings.cache_clear()
    result = CliRunner().invoke(app, ["init"])
    assert result.exit_code == 0, result.output
    match = SETUP_RE.search(result.output)
    assert match, result.output
    assert load_settings().admin_password is None
    with uvicorn_app(port, tmp_path / "uvicorn.log", ready_path="/admin/login") as served:
        yield served, match.group(1)


@pytest.fixture
def own_schedules(settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """This test's own copy of schedules/ (a correction writes the part's file): listed before
    the server fixture, so the server serves this copy."""
    folder = tmp_path / "schedules"
    shutil.copytree(settings.schedules_dir, folder)
    monkeypatch.setenv("NEWSLETTER_SCHEDULES_DIR", str(folder))
    return folder


@pytest.fixture
def stand_in(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeSendGrid]:
    """The stand-in SendGrid; the server (listed after this) is told only its address, so
    nothing on the server fixes how mail is sent."""
    with FakeSendGrid() as sg:
        monkeypatch.setenv("NEWSLETTER_SENDGRID_HOST", sg.url)
        yield sg
