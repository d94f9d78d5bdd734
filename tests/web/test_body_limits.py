"""Request body limits from the one table in web/security.py, enforced before authentication."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from newsletter.core.config import Settings
from newsletter.web import security
from newsletter.web.api import common as api_common
from newsletter.web.app import create_app


def test_one_table_decides_every_limit() -> None:
    assert security.body_limit("/admin/login") == 16 * 1024
    assert security.body_limit("/webhooks/sendgrid") == 8 * 1024 * 1024
    assert security.body_limit("/webhooks/other") == 64 * 1024  # webhook-sized only for SendGrid
    assert security.body_limit("/admin/subscribers/import") == 10 * 1024 * 1024
    assert security.body_limit("/signup") == 64 * 1024
    # the API's CSV import counts its stream against the same row (it allowed 50 MiB)
    assert security.body_limit("/api/v1/subscribers/import") == api_common.MAX_IMPORT_BYTES


@pytest.mark.parametrize("declared", [True, False])
def test_login_refuses_a_big_body_before_looking_at_the_password(
    settings: Settings, declared: bool
) -> None:
    body = b"password=" + b"x" * (20 * 1024)
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    with TestClient(create_app(settings), base_url="https://news.example.org") as client:
        if declared:
            r = client.post("/admin/login", content=body, headers=form)
        else:  # streamed without a Content-Length: counted as it arrives
            r = client.post("/admin/login", content=iter([body[:8192], body[8192:]]), headers=form)
    assert r.status_code == 413
