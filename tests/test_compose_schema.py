"""docker-compose.yml against the Compose Specification's JSON schema (vendored in tests/contracts),
with a healthcheck on every long-running service and schedules/ on a volume."""

from __future__ import annotations

import copy
import hashlib
import http.server
import json
import re
import subprocess
import sys
import threading
from typing import Any

import pytest
import redis
import yaml
from jsonschema import Draft7Validator
from paths import CONTRACTS, ROOT
from typer.testing import CliRunner

from newsletter.cli import app
from newsletter.core.config import Settings
from newsletter.queue import liveness
from newsletter.services.doctor import CHECKS

SCHEMA = CONTRACTS / "compose-spec.json"
COMPOSE = ROOT / "docker-compose.yml"
APP_SERVICES = ("init", "web", "worker", "beat")


@pytest.fixture(scope="module")
def validator() -> Draft7Validator:
    schema = json.loads(SCHEMA.read_text())
    Draft7Validator.check_schema(schema)
    return Draft7Validator(schema)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict)
    return data


def problems(validator: Draft7Validator, data: Any) -> list[str]:
    return [
        f"{'/'.join(str(p) for p in e.absolute_path)}: {e.message}"
        for e in validator.iter_errors(data)
    ]


def test_the_vendored_schema_is_the_noted_one() -> None:
    note = (CONTRACTS / "compose-spec.md").read_text()
    digest = hashlib.sha256(SCHEMA.read_bytes()).hexdigest()
    assert f"SHA-256: {digest}" in note
    assert "github.com/compose-spec/compose-spec" in note and "commit" in note


def test_compose_file_follows_the_specification(
    validator: Draft7Validator, compose: dict[str, Any]
) -> None:
    assert problems(validator, compose) == []


@pytest.mark.parametrize(
    ("where", "change", "complaint"),
    [
        (("services", "web"), {"helthcheck": {"test": ["CMD", "true"]}}, "helthcheck"),
        (("services", "beat", "healthcheck"), {"test": 5}, "5"),
        (("services", "worker"), {"depends_on": {"init": {"condition": "sometime"}}}, "sometime"),
        ((), {"volumes": {"schedules": {"driver": 5}}}, "is not of type"),
    ],
)
def test_the_schema_catches_mistakes(
    validator: Draft7Validator,
    compose: dict[str, Any],
    where: tuple[str, ...],
    change: dict[str, Any],
    complaint: str,
) -> None:
    broken = copy.deepcopy(compose)
    node = broken
    for key in where:
        node = node[key]
    node.update(change)
    found = problems(validator, broken)
    assert found and any(complaint in p for p in found), found


def test_every_long_running_service_has_a_healthcheck(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name, service in services.items():
        check = service.get("healthcheck") or {}
        if service.get("restart") == "no":  # a one-shot job (init) has nothing to watch
            assert service["command"] == ["init"]
            continue
        assert check.get("test") and not check.get("disable"), f"{name} has no healthcheck"
    worker = " ".join(services["worker"]["healthcheck"]["test"])
    assert "celery -A newsletter.tasks inspect ping" in worker
    beat = services["beat"]["healthcheck"]
    assert beat["test"] == ["CMD", "newsletter", "doctor", "--check", "beat"]
    assert "beat" in CHECKS
    seconds = int(re.fullmatch(r"(\d+)s", beat["start_period"]).group(1))  # type: ignore[union-attr]
    assert seconds > 60  # the first tick comes within a minute of the start


def test_beat_healthcheck_command_follows_beat(settings: Settings) -> None:
    """The beat service's healthcheck, run as compose runs it: 0 while beat ticks, 1 when silent."""
    compose = yaml.safe_load(COMPOSE.read_text())
    argv = compose["services"]["beat"]["healthcheck"]["test"][2:]  # after CMD, newsletter
    runner = CliRunner()
    silent = runner.invoke(app, argv)
    assert silent.exit_code == 1 and "never ticked" in silent.output
    client = redis.Redis.from_url(str(settings.redis_url))
    now = liveness.redis_now(client)
    liveness.record_beat(client, settings.redis_prefix, at=now - 30)
    alive = runner.invoke(app, argv)
    liveness.record_beat(client, settings.redis_prefix, at=now - 400)
    stale = runner.invoke(app, argv)
    client.close()
    assert alive.exit_code == 0 and "30 s ago" in alive.output
    assert stale.exit_code == 1 and "6 min ago" in stale.output


def test_schedules_live_on_a_volume(compose: dict[str, Any]) -> None:
    """Series written on the server (the admin's editor) survive an image update."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    target = re.search(r"NEWSLETTER_SCHEDULES_DIR=(\S+)", dockerfile)
    assert target is not None
    assert "schedules" in compose["volumes"]
    for name in APP_SERVICES:
        mounts = compose["services"][name]["volumes"]
        assert f"schedules:{target.group(1)}" in mounts, name
    assert re.search(r"chown -R newsletter:newsletter [^\n]*/app/schedules", dockerfile)


@pytest.mark.slow  # the healthcheck command in a child process
@pytest.mark.parametrize(("status", "healthy"), [(200, True), (503, True), (500, False)])
def test_web_healthcheck_passes_while_the_web_answers(status: int, healthy: bool) -> None:
    """The web service's healthcheck, run as compose runs it against a server answering `status`:
    a 503 (beat, workers or sending need attention) keeps the web healthy so the dashboard that
    explains the problem stays reachable; a 500 or no answer is unhealthy."""
    compose = yaml.safe_load(COMPOSE.read_text())
    code = compose["services"]["web"]["healthcheck"]["test"][-1]

    class Answer(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(status)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Answer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        local = code.replace("127.0.0.1:8000", f"127.0.0.1:{server.server_address[1]}")
        assert "127.0.0.1:8000" in code and local != code
        done = subprocess.run([sys.executable, "-c", local], check=False, timeout=30)
    finally:
        server.shutdown()
    assert (done.returncode == 0) is healthy
