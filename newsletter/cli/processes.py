"""Long-running processes: `worker`, `beat`, `web` and `run` (all three in one)."""

from __future__ import annotations

import sys

import typer

from newsletter.cli.common import console, err, server_settings

# Libraries load inside each command, not here, so `newsletter --help` starts fast.

# How long a stop waits for a worker to finish its chunk (compose's stop_grace_period too).
STOP_GRACE_SECONDS = 90


def _celery_argv(kind: str) -> list[str]:
    from newsletter.tasks import queue_name

    s = server_settings()
    if kind == "worker":
        return [
            "worker",
            "--loglevel=INFO",
            "-Q",
            queue_name(s),
            "--without-gossip",
            "--without-mingle",
        ]
    from newsletter.core.private_files import private_folder

    private_folder(s.var_dir)  # 0700 when made here: the database and key live in it
    return ["beat", "--loglevel=INFO", "-s", str(s.var_dir / "celerybeat-schedule")]


def worker(
    concurrency: int | None = typer.Option(None, "--concurrency", "-c", help="Worker processes."),
) -> None:
    """Run a Celery worker (sends articles; add more on other machines for throughput).

    Stopping it: SIGTERM (`docker stop`, Ctrl-C once) is a warm shutdown: the worker takes no
    new chunk, finishes the chunk in hand and records its outcome, then exits, so a stop never
    leaves readers whose outcome is unknown. A chunk of 1,000 readers takes about half a second
    (measured against the SendGrid stand-in); the longest, a provider that hangs, two requests
    of the 30 s timeout. Give the stop at least STOP_GRACE_SECONDS (90 s; compose's
    stop_grace_period) before a SIGKILL; SMTP sends one message at a time: allow more.
    A second SIGTERM or Ctrl-C is a cold shutdown: what it cuts off is settled by reconcile.
    """
    from newsletter.tasks import app as celery_app

    argv = _celery_argv("worker") + ([f"--concurrency={concurrency}"] if concurrency else [])
    celery_app.worker_main(argv)


def beat() -> None:
    """Run Celery beat: a tick every minute and a reconcile every minute (UTC)."""
    from newsletter.tasks import app as celery_app

    celery_app.start(_celery_argv("beat"))


def web(
    host: str = typer.Option("127.0.0.1", "--host"),
    port: int = typer.Option(8000, "--port"),
) -> None:
    """Run the web app (public pages, admin, API, webhook) with uvicorn."""
    import uvicorn

    server_settings()
    uvicorn.run(
        "newsletter.web.app:create_app", factory=True, host=host, port=port, proxy_headers=True
    )


def run(
    host: str = typer.Option("127.0.0.1", "--host"),
    port: int = typer.Option(8000, "--port"),
) -> None:
    """Everything in one: web, worker, beat (and an embedded Redis when none is configured)."""
    import os
    import signal
    import subprocess
    import time

    from newsletter.queue.embedded import EmbeddedRedis

    s = server_settings()
    env = dict(os.environ)
    redis_server: EmbeddedRedis | None = None
    if not s.redis_url:
        redis_server = EmbeddedRedis((s.var_dir / "redis").resolve())
        redis_server.start()
        env["NEWSLETTER_REDIS_URL"] = redis_server.url
        (s.var_dir / "redis" / "url").write_text(redis_server.url)  # for other commands
        console.print(f"embedded Redis on {redis_server.url} (data in {s.var_dir / 'redis'})")
    exe = [sys.executable, "-m", "newsletter"]
    commands = {
        "web": [*exe, "web", "--host", host, "--port", str(port)],
        "worker": [*exe, "worker"],
        "beat": [*exe, "beat"],
    }  # fmt: skip
    children: dict[str, subprocess.Popen[bytes]] = {}
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        for name, argv in commands.items():
            children[name] = subprocess.Popen(argv, env=env, start_new_session=True)
        console.print(
            f"newsletter running: web http://{host}:{port}/ (admin at /admin), "
            f"outbox {s.outbox_dir if s.mail_backend == 'outbox' else s.mail_backend}; Ctrl-C stops"
        )
        while not stopping:
            for name, child in children.items():
                if child.poll() is not None:
                    err.print(f"[red]{name} exited with {child.returncode}; stopping[/red]")
                    stopping = True
            time.sleep(0.5)
    finally:
        for child in children.values():
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in children.values():
            try:
                child.wait(timeout=STOP_GRACE_SECONDS)  # the worker finishes its chunk
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        if redis_server is not None:
            (s.var_dir / "redis" / "url").unlink(missing_ok=True)
            redis_server.stop()
        console.print("stopped")
