"""Compose's web service knows which proxy may name the visitor (issue 13 #11), trusts nothing
else, and is published on the host's loopback only (issue 22)."""

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


def trusted_by_default(compose: dict[str, Any]) -> list[ipaddress.IPv4Network]:
    value = compose["services"]["web"]["environment"]["FORWARDED_ALLOW_IPS"]
    assert value.startswith("${FORWARDED_ALLOW_IPS:-")  # the operator can set their own
    default = interpolate(value, {})
    assert default and "*" not in default  # never every peer
    return [ipaddress.IPv4Network(part.strip()) for part in default.split(",")]


def test_web_trusts_only_the_gateway_a_proxy_on_the_host_comes_from(
    compose: dict[str, Any],
) -> None:
    (network,) = compose["networks"]["default"]["ipam"]["config"]
    subnet = ipaddress.IPv4Network(network["subnet"])
    gateway = ipaddress.IPv4Address(network["gateway"])
    assert gateway in subnet
    trusted = trusted_by_default(compose)
    assert any(gateway in net for net in trusted)
    # The other containers on the network (redis, postgres, worker, beat) are not trusted,
    # nor is any other address: the default is exactly the gateway.
    assert sum(net.num_addresses for net in trusted) == 1
    for host in list(subnet.hosts())[1:]:
        assert not any(host in net for net in trusted), host
    assert not any(ipaddress.IPv4Address("172.18.0.5") in net for net in trusted)


def test_the_web_port_is_published_on_loopback_only(compose: dict[str, Any]) -> None:
    (port,) = compose["services"]["web"]["ports"]
    assert interpolate(port, {}) == "127.0.0.1:8000:8000"
    assert interpolate(port, {"HTTP_PORT": "8080"}) == "127.0.0.1:8080:8000"
    for name, service in compose["services"].items():
        if name != "web":
            assert "ports" not in service, f"{name} publishes a port"


def test_web_keeps_the_app_settings_and_passes_the_metrics_token(compose: dict[str, Any]) -> None:
    web = compose["services"]["web"]["environment"]
    worker = compose["services"]["worker"]["environment"]
    assert {k: v for k, v in web.items() if k != "FORWARDED_ALLOW_IPS"} == worker
    assert "NEWSLETTER_METRICS_TOKEN" in web and web["NEWSLETTER_METRICS_TOKEN"] is None
