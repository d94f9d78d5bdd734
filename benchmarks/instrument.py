"""Per-process operation counters for the benchmark: SQL statements, Redis round trips, peak RSS.

SQL: every cursor execution (SQLAlchemy `before_cursor_execute` on all engines; an executemany
counts once). Redis: every packet written to a connection (`send_packed_command`), so a pipeline
or a Lua script is one round trip; the application's client (newsletter.queue.redis_client) is
told apart from Celery's broker connections by its connection class.
"""

from __future__ import annotations

import json
import os
import resource
import time
from pathlib import Path
from typing import Any

import redis
import redis.connection
from sqlalchemy import event
from sqlalchemy.engine import Engine


class Counts:
    sql = 0
    redis_app = 0
    redis_broker = 0
    tasks = 0
    sent = 0
    first_start = 0.0
    last_end = 0.0
    cpu_start = 0.0  # process CPU when the measured work began (the tick: after its imports)

    @classmethod
    def reset(cls) -> None:
        cls.sql = cls.redis_app = cls.redis_broker = cls.tasks = cls.sent = 0
        cls.first_start = cls.last_end = cls.cpu_start = 0.0

    @classmethod
    def snapshot(cls) -> dict[str, Any]:
        return {
            "pid": os.getpid(),
            "sql": cls.sql,
            "redis_app": cls.redis_app,
            "redis_broker": cls.redis_broker,
            "tasks": cls.tasks,
            "sent": cls.sent,
            "first_start": cls.first_start,
            "last_end": cls.last_end,
            "peak_rss_mb": peak_rss_mb(),
            "cpu_s": cpu_seconds(),
            "cpu_start_s": cls.cpu_start,
        }


class AppConnection(redis.Connection):
    """The connection class of the application's Redis client (counted as `redis_app`)."""


def cpu_seconds() -> float:
    """User + system CPU time of this process so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def peak_rss_mb(pid: int | None = None) -> float:
    """Peak resident set size (VmHWM) of a process, in MB."""
    if pid is None:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


_installed = False


def install(redis_url: str) -> None:
    """Count SQL and Redis operations in this process (and in processes forked from it)."""
    global _installed
    if _installed:
        return
    _installed = True

    def on_sql(*_: Any) -> None:
        Counts.sql += 1

    event.listen(Engine, "before_cursor_execute", on_sql)
    original = redis.connection.AbstractConnection.send_packed_command

    def send_packed_command(self: Any, command: Any, check_health: bool = True) -> None:
        if isinstance(self, AppConnection):
            Counts.redis_app += 1
        else:
            Counts.redis_broker += 1
        original(self, command, check_health)

    redis.connection.AbstractConnection.send_packed_command = send_packed_command  # type: ignore[method-assign]

    from newsletter.queue import connection as queue

    queue._clients[redis_url] = redis.Redis.from_url(
        redis_url, decode_responses=True, connection_class=AppConnection
    )


def start_profile() -> Any:
    """A running pyinstrument profiler (NL_BENCH_PROFILE=1 runs)."""
    from pyinstrument import Profiler

    profiler = Profiler(interval=0.0005)
    profiler.start()
    return profiler


def stop_profile(profiler: Any, path: Path) -> None:
    profiler.stop()
    with path.open("a") as fh:
        fh.write(profiler.output_text(unicode=False, color=False, show_all=False))


def dump(directory: Path, role: str) -> None:
    """Write this process's counters to <directory>/<role>-<pid>.json (atomically)."""
    path = directory / f"{role}-{os.getpid()}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(Counts.snapshot()))
    tmp.replace(path)


def read_all(directory: Path, role: str) -> list[dict[str, Any]]:
    out = []
    for path in directory.glob(f"{role}-*.json"):
        try:
            out.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            continue
    return out


def track_tasks(directory: Path, role: str) -> None:
    """Celery signals: count each task's `sent` and time span; dump after each task."""
    from celery import signals

    @signals.worker_process_init.connect(weak=False)
    def _fresh(**_: Any) -> None:
        Counts.reset()

    profiling = bool(os.environ.get("NL_BENCH_PROFILE"))
    profiler: list[Any] = []

    @signals.task_prerun.connect(weak=False)
    def _start(**_: Any) -> None:
        if not Counts.first_start:
            Counts.first_start = time.time()
        if profiling and Counts.tasks in (2, 3):
            profiler.append(start_profile())

    @signals.task_postrun.connect(weak=False)
    def _done(retval: Any = None, **_: Any) -> None:
        if profiler:
            stop_profile(profiler.pop(), directory / f"{role}-profile-{os.getpid()}.txt")
        Counts.tasks += 1
        if isinstance(retval, dict):
            Counts.sent += int(retval.get("sent", 0))
        Counts.last_end = time.time()
        dump(directory, role)
