"""Compose puts Caddy in front of web (issue 25): web trusts forwarded headers from Caddy's fixed
address only and publishes no port; Caddy publishes 80/443 and serves the repository's Caddyfile."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest
import yaml
from paths import ROOT
from test_compose import interpolate


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert isinstance(data, dict)
    return data


def caddy_address(compose: dict[str, Any]) -> ipaddress.IPv4Address:
    return ipaddress.IPv4Address(
        compose["services"]["caddy"]["networks"]["default"]["ipv4_address"]
    )


def test_web_trusts_only_caddys_fixed_address(compose: dict[str, Any]) -> None:
    (network,) = compose["networks"]["default"]["ipam"]["config"]
    subnet = ipaddress.IPv4Network(network["subnet"])
    caddy = caddy_address(compose)
    assert caddy in subnet and caddy != ipaddress.IPv4Address(network["gateway"])
    value = compose["services"]["web"]["environment"]["FORWARDED_ALLOW_IPS"]
    assert "$" not in value and "*" not in value  # fixed: nothing else may name the visitor
    trusted = [ipaddress.IPv4Network(part.strip()) for part in value.split(",")]
    assert trusted == [ipaddress.IPv4Network(f"{caddy}/32")]
    # the other containers (redis, postgres, worker, beat) and the host's gateway are not
    for host in subnet.hosts():
        if host != caddy:
            assert not any(host in net for net in trusted), host


def test_only_caddy_publishes_ports_and_web_none(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert "ports" not in services["web"] and services["web"]["expose"] == ["8000"]
    for name, service in services.items():
        if name != "caddy":
            assert "ports" not in service, f"{name} publishes a port"
    ports = [interpolate(p, {}) for p in services["caddy"]["ports"]]
    assert ports == ["80:80", "443:443", "443:443/udp"]


def test_caddy_serves_the_caddyfile_for_the_domain_in_front_of_web(
    compose: dict[str, Any],
) -> None:
    caddy = compose["services"]["caddy"]
    assert caddy["image"].startswith("caddy:2")
    assert "./Caddyfile:/etc/caddy/Caddyfile:ro" in caddy["volumes"]
    assert any(v.startswith("caddydata:/data") for v in caddy["volumes"])  # certificates kept
    assert "caddydata" in compose["volumes"]
    env = caddy["environment"]
    with pytest.raises(KeyError, match="NEWSLETTER_DOMAIN"):
        interpolate(env["NEWSLETTER_DOMAIN"], {})
    assert interpolate(env["NEWSLETTER_DOMAIN"], {"NEWSLETTER_DOMAIN": "news.example.org"})
    assert env["CADDY_UPSTREAM"] == "web:8000"
    assert caddy["depends_on"]["web"]["condition"] == "service_started"
    assert caddy["healthcheck"]["test"]


def test_web_keeps_the_app_settings_and_passes_the_metrics_token(compose: dict[str, Any]) -> None:
    web = compose["services"]["web"]["environment"]
    worker = compose["services"]["worker"]["environment"]
    assert {k: v for k, v in web.items() if k != "FORWARDED_ALLOW_IPS"} == worker
    assert "NEWSLETTER_METRICS_TOKEN" in web and web["NEWSLETTER_METRICS_TOKEN"] is None
