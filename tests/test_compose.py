"""docker-compose.yml and Dockerfile agree with the settings (compose can't run on these machines)."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from paths import ROOT

from newsletter.core.config import ENV_PREFIX, Settings, get_settings, load_settings

COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
APP_SERVICES = ("web", "worker", "beat")
_VAR = re.compile(r"\$\{([A-Z0-9_]+)(?::?([-?])([^}]*))?\}")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict)
    return data


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose-style ${VAR}, ${VAR:-default}, ${VAR:?error}; $$ is a literal $."""

    def one(match: re.Match[str]) -> str:
        name, op, arg = match.group(1), match.group(2), match.group(3)
        if name in env and env[name] != "":
            return env[name]
        if op == "?":
            raise KeyError(f"{name}: {arg}")
        return arg if op == "-" else ""

    return _VAR.sub(one, value).replace("$$", "$")


def test_services_and_healthchecks(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert {"redis", "postgres", *APP_SERVICES} <= set(services)
    for name in ("redis", "postgres", *APP_SERVICES):
        check = services[name].get("healthcheck")
        assert check and check.get("test"), f"{name} has no healthcheck"
        assert not check.get("disable")
    redis_cmd = " ".join(services["redis"]["command"])
    assert "--appendonly yes" in redis_cmd
    assert "--requirepass" in redis_cmd
    assert "${REDIS_PASSWORD" in services["redis"]["environment"]["REDIS_PASSWORD"]
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])


def test_app_services_use_the_image_and_wait_for_init(compose: dict[str, Any]) -> None:
    services = compose["services"]
    commands = {name: services[name]["command"][0] for name in (*APP_SERVICES, "init")}
    assert commands == {"web": "web", "worker": "worker", "beat": "beat", "init": "init"}
    for name in APP_SERVICES:
        service = services[name]
        assert service["build"]["context"] == "."
        assert service["build"]["dockerfile"] == "Dockerfile"
        depends = service["depends_on"]
        assert depends["init"]["condition"] == "service_completed_successfully"
        assert depends["redis"]["condition"] == "service_healthy"
        assert depends["postgres"]["condition"] == "service_healthy"
    assert "/healthz" in " ".join(services["web"]["healthcheck"]["test"])


# Read by Caddy (the Caddyfile), not by the app: the name readers' browsers reach.
CADDY_VARIABLES = {"DOMAIN"}


def test_every_newsletter_variable_is_a_setting(compose: dict[str, Any]) -> None:
    caddyfile = (ROOT / "Caddyfile").read_text()
    assert all(f"{{${ENV_PREFIX}{v}}}" in caddyfile for v in CADDY_VARIABLES)
    fields = {name.upper() for name in Settings.model_fields} | CADDY_VARIABLES
    text = COMPOSE.read_text()
    used = set(re.findall(r"\bNEWSLETTER_([A-Z0-9_]+)", text))
    for service in compose["services"].values():
        keys = service.get("environment") or {}
        used |= {k.removeprefix(ENV_PREFIX) for k in keys if k.startswith(ENV_PREFIX)}
    unknown = sorted(v for v in used if v not in fields)
    assert not unknown, f"not settings: {', '.join(ENV_PREFIX + v for v in unknown)}"
    dockerfile_vars = set(re.findall(r"\bNEWSLETTER_([A-Z0-9_]+)=", DOCKERFILE.read_text()))
    assert dockerfile_vars and dockerfile_vars <= fields


def test_required_variables_fail_loudly(compose: dict[str, Any]) -> None:
    env = compose["services"]["web"]["environment"]
    with pytest.raises(KeyError, match="NEWSLETTER_SECRET_KEY"):
        interpolate(env["NEWSLETTER_SECRET_KEY"], {})
    with pytest.raises(KeyError, match="POSTGRES_PASSWORD"):
        interpolate(env["NEWSLETTER_DATABASE_URL"], {})


def test_interpolated_environment_is_valid_settings(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    host = {
        "POSTGRES_PASSWORD": "pg-pass",
        "REDIS_PASSWORD": "redis-pass",
        "NEWSLETTER_SECRET_KEY": "s" * 40,
        "NEWSLETTER_PUBLIC_URL": "https://news.example.org",
        "NEWSLETTER_FROM_EMAIL": "news@example.org",
        "NEWSLETTER_FROM_NAME": "Example Practice",
        "NEWSLETTER_POSTAL_ADDRESS": "1 Example Road, Springfield",
        "NEWSLETTER_SENDGRID_API_KEY": "SG.x",
    }
    for name in APP_SERVICES:
        raw = compose["services"][name]["environment"]
        for key in list(os.environ):
            if key.startswith(ENV_PREFIX):
                monkeypatch.delenv(key)
        for key, value in raw.items():
            if value is None:  # bare key: passed through only when set on the host
                if key in host:
                    monkeypatch.setenv(key, host[key])
                continue
            monkeypatch.setenv(key, interpolate(str(value), host))
        get_settings.cache_clear()
        settings = load_settings(var_dir=tmp_path)
        assert settings.database_url == (
            "postgresql+psycopg://newsletter:pg-pass@postgres:5432/newsletter"
        )
        assert settings.redis_url == "redis://:redis-pass@redis:6379/0"
        assert settings.mail_backend == "sendgrid"
        assert settings.secret == "s" * 40
    get_settings.cache_clear()


def test_dockerfile() -> None:
    text = DOCKERFILE.read_text()
    stages = re.findall(r"^FROM (\S+)", text, flags=re.M)
    assert stages and stages[-1] == "python:3.11-slim"
    assert all(stage.startswith("python:3.11-slim") for stage in stages)
    assert 'ENTRYPOINT ["newsletter"]' in text
    assert re.search(r"^USER (?!root)\w+", text, flags=re.M)
    for folder in ("templates", "schedules", "newsletter"):
        assert f"COPY {folder} " in text and (ROOT / folder).is_dir()
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert ".venv" in ignored and "var" in ignored and ".git" in ignored
