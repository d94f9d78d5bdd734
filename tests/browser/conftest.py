"""Browser fixtures: the shipped series in the test database, a real uvicorn server, Chromium."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from paths import free_port

from newsletter import content, schedule
from newsletter.config import Settings, load_settings
from newsletter.db import session_scope
from newsletter.models import Part, Series

CHROMIUM = "/usr/bin/chromium"
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
        content.sync(session, specs)
        for spec in sorted(specs, key=lambda s: (s.order or 0, s.slug)):
            schedule.queue_series(session, spec.slug, None, now)
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
    base = f"http://127.0.0.1:{port}"
    env = dict(os.environ, NEWSLETTER_PUBLIC_URL=base)
    monkeypatch.setenv("NEWSLETTER_PUBLIC_URL", base)  # this test's settings agree with the server
    served = load_settings()
    load_shipped_series(served)
    log = (tmp_path / "uvicorn.log").open("wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "newsletter.web.app:create_app",
            "--factory",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError((tmp_path / "uvicorn.log").read_text())
            time.sleep(0.2)
        yield base, served
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


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
