"""Compose's web service knows which proxy may name the visitor (issue 13 #11)."""

from __future__ import annotations

import ipaddress

import yaml
from paths import ROOT


def test_web_trusts_a_proxy_on_a_docker_network_and_keeps_the_app_settings() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    web = compose["services"]["web"]["environment"]
    value = web["FORWARDED_ALLOW_IPS"]
    default = value.removeprefix("${FORWARDED_ALLOW_IPS:-").removesuffix("}")
    assert value.startswith("${FORWARDED_ALLOW_IPS:-") and default != value
    gateway = ipaddress.ip_address("172.18.0.1")  # a compose network's gateway
    assert any(gateway in ipaddress.ip_network(net.strip()) for net in default.split(","))
    assert "*" not in default  # never every peer
    worker = compose["services"]["worker"]["environment"]
    assert {k: v for k, v in web.items() if k != "FORWARDED_ALLOW_IPS"} == worker
