"""`newsletter --help` starts fast: the command line imports its libraries only in the commands
that need them. Counted (which modules `-X importtime` lists), never timed; the time is in
benchmarks/startup.py."""

from __future__ import annotations

import subprocess
import sys

import pytest

# What a command may load, but `--help` must not: each costs 50-900 ms of start-up here.
HEAVY = (
    "celery",
    "kombu",
    "sqlalchemy",
    "alembic",
    "psycopg",
    "redis",
    "jinja2",
    "css_inline",
    "sendgrid",
    "pydantic",
    "pydantic_settings",
    "email_validator",
    "fastapi",
    "starlette",
    "uvicorn",
    "httpx",
    "yaml",
    "rich",  # Typer's rich help alone took 0.18 s of CPU
    "newsletter.core.config",
    "newsletter.store",
    "newsletter.engine",
    "newsletter.services",
    "newsletter.tasks",
)
MODULES_AT_MOST = 250  # 156 today: Python's start-up, typer, click and the cli package


def imported(*argv: str) -> tuple[list[str], str]:
    run = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "newsletter", *argv],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    lines = [line for line in run.stderr.splitlines() if line.startswith("import time:")]
    names = [line.rsplit("|", 1)[1].strip() for line in lines[1:]]  # [0] is the column titles
    return names, run.stdout


def heavy(names: list[str]) -> list[str]:
    return sorted(n for n in names if n.split(".")[0] in HEAVY or n.startswith(HEAVY))


def test_help_imports_no_heavy_module() -> None:
    names, out = imported("--help")
    assert "Usage:" in out and "Commands" in out
    assert heavy(names) == []
    assert "newsletter.cli" in names  # the list is real: the cli package itself is in it
    assert len(names) <= MODULES_AT_MOST, len(names)


@pytest.mark.parametrize("group", ["subscribers", "series", "queue", "admin"])
def test_a_group_help_imports_no_heavy_module_of_ours(group: str) -> None:
    names, out = imported(group, "--help")
    assert "Usage:" in out and "Commands" in out
    # Typer itself coerces its commands' parameters through pydantic (typer._adapters) once a
    # group lists them: Typer's, not ours.
    assert "typer._adapters" in names
    assert [n for n in heavy(names) if n.split(".")[0] not in ("pydantic", "pydantic_core")] == []


def test_help_lists_every_registered_command() -> None:
    _, out = imported("--help")
    for command in ("init", "tick", "reconcile", "worker", "beat", "web", "run", "send-test"):
        assert f"  {command} " in out
    for group in ("series", "subscribers", "queue", "admin"):
        assert f"  {group} " in out


@pytest.mark.slow  # a `newsletter` process that imports everything
def test_a_bad_setting_still_exits_2_with_one_line(tmp_path: object) -> None:
    import os

    env = {**os.environ, "NEWSLETTER_MAIL_BACKEND": "pigeon"}
    run = subprocess.run(
        [sys.executable, "-m", "newsletter", "queue", "status"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert run.returncode == 2
    assert "configuration error" in run.stderr and "NEWSLETTER_MAIL_BACKEND" in run.stderr
