"""A real uvicorn process serving the app, for browser tests (started and stopped around a test)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx


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
