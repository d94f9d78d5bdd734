"""A real uvicorn serving the app: in its own process (browser tests), or in a thread of this one
behind uvicorn's proxy-header handling (the tests that need to see which thread ran what)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import uvicorn
from fastapi import FastAPI


@contextmanager
def uvicorn_app(port: int, log_path: Path, ready_path: str = "/healthz") -> Iterator[str]:
    """Serve newsletter.web.app with this process's NEWSLETTER_* environment; yield its base URL."""
    base = f"http://127.0.0.1:{port}"
    command = [
        sys.executable,
        *("-m", "uvicorn", "newsletter.web.app:create_app", "--factory"),
        *("--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"),
    ]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(command, env=dict(os.environ), stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(base + ready_path, timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(log_path.read_text())
                time.sleep(0.2)
            yield base
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()


@contextmanager
def uvicorn_thread(
    app: FastAPI, forwarded_allow_ips: str = "127.0.0.1"
) -> Iterator[tuple[str, int]]:
    """Serve `app` with uvicorn in a thread, proxy headers on (as `newsletter web` runs it) and
    trusted from `forwarded_allow_ips` (this test, on 127.0.0.1, is then the trusted proxy).
    Yields the base URL and the ident of the thread running the event loop."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app,
        proxy_headers=True,
        forwarded_allow_ips=forwarded_allow_ips,
        log_config=None,  # the process's logging stays as the suite set it (no dictConfig,
        access_log=False,  # no levels changed on uvicorn's loggers for later tests)
        lifespan="on",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30  # against hanging only
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.05)
        assert thread.ident is not None
        yield f"http://127.0.0.1:{port}", thread.ident
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
