"""The dashboard in Chromium while beat runs, stops and starts again (real beat and worker).

Beat's silence is 3 minutes; the test does not wait for them: after beat stops, it moves the
last tick and beat's last sign of life back by that much in Redis (what 3 minutes of silence
leave behind), and the dashboard must say so. Beat started again ticks within its 1-second
interval, and the banner clears on the next load.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from paths import free_port
from servers import uvicorn_app
from waiting import wait_for

from newsletter.core.config import Settings, load_settings
from newsletter.queue import liveness
from newsletter.queue.liveness import BEAT_SILENT_SECONDS

pytestmark = pytest.mark.browser

PASSWORD = "the therapist's long password"


@pytest.fixture
def site(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[str, Settings]]:
    port = free_port()
    monkeypatch.setenv("NEWSLETTER_PUBLIC_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("NEWSLETTER_ADMIN_PASSWORD", PASSWORD)
    monkeypatch.setenv("NEWSLETTER_BEAT_SECONDS", "1")
    served = load_settings()
    with uvicorn_app(port, tmp_path / "uvicorn.log", ready_path="/admin/login") as base:
        yield base, served


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Callable[[str], subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []

    def run(kind: str) -> subprocess.Popen[bytes]:
        log = (tmp_path / f"{kind}-{len(started)}.log").open("wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "newsletter", kind],
            env=dict(os.environ),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        started.append(proc)
        return proc

    yield run
    for proc in started:
        stop(proc)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_the_banner_shows_while_beat_is_silent_and_clears_when_it_ticks(
    site, start, browser, artifacts: Path
) -> None:
    base, settings = site
    r = redis.Redis.from_url(str(settings.redis_url), decode_responses=True)
    prefix = settings.redis_prefix
    worker = start("worker")
    wait_for(lambda: liveness.live_workers(r, prefix), "the worker's first heartbeat")
    beat = start("beat")
    wait_for(lambda: liveness.last_tick(r, prefix), "a tick sent by beat and run by the worker")
    assert liveness.last_beat(r, prefix) is not None  # beat's own sign of life, from its process

    page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    page.goto(f"{base}/admin")
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/admin")
    line = page.locator("[data-health=ok]")
    assert line.is_visible()
    assert "Sending: checked" in line.text_content()  # her words (web/words.py)
    assert page.locator("[data-health=beat-silent]").count() == 0
    page.screenshot(path=str(artifacts / "health-ok.png"), full_page=True)

    # Beat stops; its last signs of life age past the threshold (what 3 minutes would do).
    stop(beat)
    now = liveness.redis_now(r)
    silent_since = now - BEAT_SILENT_SECONDS - 20
    tick = liveness.last_tick(r, prefix)
    assert tick is not None
    liveness.record_tick(r, prefix, tick.summary, at=silent_since)
    liveness.record_beat(r, prefix, at=silent_since)
    page.reload()
    banner = page.locator("[data-health=beat-silent]")
    assert banner.is_visible() and banner.get_attribute("role") == "alert"
    assert "Sending is stopped" in banner.text_content()  # her words; the facts are on About
    page.goto(f"{base}/admin/about")
    assert "3 min ago" in (page.text_content("main") or "")  # the last tick's age, for the server
    page.goto(f"{base}/admin")
    assert page.locator("[data-health=ok]").count() == 0
    page.screenshot(path=str(artifacts / "health-beat-silent.png"), full_page=True)

    # Beat starts again: its next tick clears the banner.
    start("beat")
    wait_for(
        lambda: (t := liveness.last_tick(r, prefix)) is not None and t.at > silent_since + 60,
        "a new tick after beat restarted",
    )
    page.reload()
    assert page.locator("[data-health=beat-silent]").count() == 0
    assert page.locator("[data-health=ok]").is_visible()
    assert worker.poll() is None
