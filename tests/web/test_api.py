"""The JSON API: bearer tokens, each endpoint's behaviour, and schemathesis against /openapi.json."""

from __future__ import annotations

import datetime as dt

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from pydantic import SecretStr
from schemathesis.checks import positive_data_acceptance
from sqlalchemy import select
from time_machine import TimeMachineFixture
from web_helpers import sign_in

from newsletter.core.config import Settings
from newsletter.services import roster
from newsletter.store.db import session_scope
from newsletter.store.models import Subscriber, Suppression
from newsletter.web.app import create_app

MYTHS = "myths-about-psychotherapy"
CO = "co-created-process"


def test_token_required(api_app: FastAPI, token: str) -> None:
    with TestClient(api_app, base_url="https://news.example.org") as client:
        r = client.get("/api/v1/series")
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
        assert r.json() == {"detail": "a valid API token is needed (Authorization: Bearer …)"}
        r = client.get("/api/v1/series", headers={"Authorization": f"Basic {token}"})
        assert r.status_code == 401
        r = client.get("/api/v1/series", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200


def test_series_list_and_queue(api: TestClient, time_machine: TimeMachineFixture) -> None:
    time_machine.move_to(dt.datetime(2027, 3, 1, 12, tzinfo=dt.UTC), tick=True)  # a Monday
    r = api.get("/api/v1/series")
    assert r.status_code == 200
    series = {s["slug"]: s for s in r.json()}
    assert set(series) == {MYTHS, CO}
    assert [p["number"] for p in series[MYTHS]["parts"]] == [1, 2, 3, 4]
    assert series[MYTHS]["state"] == "draft"
    # one active subscriber, then queue Co-Created to start next month
    r = api.post("/api/v1/subscribers", json={"email": "ann@example.org", "confirmed": True})
    assert r.status_code == 201, r.text
    start = dt.date(2027, 4, 1)  # a Thursday, next month
    r = api.post(f"/api/v1/series/{CO}/queue", json={"start": start.isoformat()})
    assert r.status_code == 200, r.text
    body = r.json()
    # Ann is enrolled; her first part goes out on the first Tuesday from the start date
    assert body["slug"] == CO and body["count"] == 1
    assert body["first_date"] == "2027-04-06"
    assert api.post("/api/v1/series/nope/queue", json={}).status_code == 404
    assert api.post(f"/api/v1/series/{CO}/queue", json={"start": "soon"}).status_code == 422


def test_subscribers_crud(api: TestClient, settings: Settings) -> None:
    r = api.post(
        "/api/v1/subscribers",
        json={"email": "Bea@example.org", "name": "Bea", "timezone": "Europe/Rome"},
    )
    assert r.status_code == 201, r.text
    bea = r.json()
    assert bea["status"] == "pending" and bea["consent_method"] == "api"
    assert len(list(settings.outbox_dir.glob("*.eml"))) == 1  # the confirmation email
    assert api.post("/api/v1/subscribers", json={"email": "bea@EXAMPLE.org"}).status_code == 409
    assert api.post("/api/v1/subscribers", json={"email": "nope"}).status_code in (400, 422)
    r = api.post("/api/v1/subscribers", json={"email": "z@example.org", "timezone": "Mars/X"})
    assert r.status_code == 400 and "time zone" in r.json()["detail"]

    r = api.post("/api/v1/subscribers/search", json={"q": "bea"})
    assert r.json()["total"] == 1 and r.json()["items"][0]["id"] == bea["id"]
    assert api.get(f"/api/v1/subscribers/{bea['id']}").json()["email"] == "Bea@example.org"
    assert api.get("/api/v1/subscribers/999999").status_code == 404

    r = api.patch(
        f"/api/v1/subscribers/{bea['id']}",
        json={"cadence": "fortnightly", "name": "Beatrice", "paused_until": "2030-01-01"},
    )
    assert r.status_code == 200, r.text
    assert r.json()["cadence"] == "fortnightly" and r.json()["name"] == "Beatrice"
    assert (
        api.patch(f"/api/v1/subscribers/{bea['id']}", json={"cadence": "daily"}).status_code == 422
    )

    record = api.get(f"/api/v1/subscribers/{bea['id']}/export").json()
    assert record["subscriber"]["email"] == "Bea@example.org" and "consent" in record

    r = api.post(f"/api/v1/subscribers/{bea['id']}/unsubscribe")
    assert r.status_code == 200 and r.json()["status"] == "unsubscribed"
    assert api.post(f"/api/v1/subscribers/{bea['id']}/unsubscribe").status_code == 200

    assert api.delete(f"/api/v1/subscribers/{bea['id']}").status_code == 204
    assert api.delete(f"/api/v1/subscribers/{bea['id']}").status_code == 404
    with session_scope(settings.database_url) as session:
        assert session.scalar(select(Subscriber)) is None
        assert session.scalar(select(Suppression)) is not None


def test_import_dry_run_and_import(api: TestClient) -> None:
    data = "\ufeffemail;name\ncat@example.org;Cat\nCAT@example.org;dup\nbad;x\n".encode()
    r = api.post("/api/v1/subscribers/import", content=data, headers={"content-type": "text/csv"})
    assert r.status_code == 200, r.text
    report = r.json()
    assert report["dry_run"] and report["new"] == 1 and report["duplicates"] == 1
    assert report["invalid"][0]["line"] == 4
    r = api.post(
        "/api/v1/subscribers/import",
        params={"dry_run": "false", "confirmed": "true"},
        content=data,
        headers={"content-type": "text/csv"},
    )
    assert r.json()["new"] == 1 and not r.json()["dry_run"]
    assert api.get("/api/v1/subscribers", params={"status": "active"}).json()["total"] == 1
    r = api.post("/api/v1/subscribers/import", content=b"", headers={"content-type": "text/csv"})
    assert r.status_code == 400


def test_import_names_the_tool_and_what_each_column_becomes(api: TestClient) -> None:
    data = b"email,subscriber_type,tags\npia@example.org,unsubscribed,grief\n"
    r = api.post("/api/v1/subscribers/import", content=data, headers={"content-type": "text/csv"})
    assert r.status_code == 200, r.text
    report = r.json()
    assert (report["source"], report["tags"]) == ("Buttondown", {"grief": 1})
    assert [column for column, _ in report["columns"]] == ["email", "subscriber_type", "tags"]


def test_deliveries_and_stats(api: TestClient) -> None:
    assert api.get("/api/v1/deliveries").json() == []
    stats = api.get("/api/v1/stats").json()
    assert len(stats["week"]) == 7 and stats["sending_halted"] is None
    assert stats["last_7_days"]["sent"] == 0
    assert set(stats["subscribers"]) >= {"pending", "active", "paused", "unsubscribed", "bounced"}


def test_token_checked_before_the_body_is_parsed(api_app: FastAPI, token: str) -> None:
    with TestClient(api_app, base_url="https://news.example.org") as client:
        for headers in ({}, {"Authorization": "Bearer not-a-token"}, {"Authorization": token}):
            r = client.post(
                "/api/v1/subscribers/search",
                content=b'{"q": [broken',
                headers={**headers, "Content-Type": "application/json"},
            )
            assert r.status_code == 401, r.text  # not 422 with the parser's detail
            assert r.json() == {"detail": "a valid API token is needed (Authorization: Bearer …)"}
        r = client.post(
            "/api/v1/subscribers/search",
            content=b'{"q": [broken',
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        assert r.status_code == 422


def test_openapi_only_for_the_admin_or_a_token(settings: Settings, token: str) -> None:
    password = "a calm and long password"
    app = create_app(settings.model_copy(update={"admin_password": SecretStr(password)}))
    with TestClient(app, base_url="https://news.example.org", follow_redirects=False) as client:
        assert client.get("/openapi.json").status_code == 401
        bad = client.get("/openapi.json", headers={"Authorization": "Bearer nope"})
        assert bad.status_code == 401 and bad.headers["www-authenticate"] == "Bearer"
        ok = client.get("/openapi.json", headers={"Authorization": f"Bearer {token}"})
        assert ok.status_code == 200 and "/api/v1/series" in ok.json()["paths"]
        sign_in(client, password)  # signed in: the session cookie alone opens the document
        assert client.get("/openapi.json").status_code == 200


def test_openapi_lists_only_token_protected_api_routes(api_app: FastAPI, token: str) -> None:
    with TestClient(api_app) as client:
        spec = client.get("/openapi.json", headers={"Authorization": f"Bearer {token}"}).json()
    paths = {p for p in spec["paths"] if p.startswith("/api/")}
    assert len(paths) >= 8 and all(p.startswith("/api/v1/") for p in paths), paths
    assert not [p for p in spec["paths"] if p.startswith("/admin")]  # pages stay out of it
    for path, ops in spec["paths"].items():
        if path not in paths:
            continue
        for method, op in ops.items():
            assert op.get("security"), (method, path)
            assert "401" in op["responses"], (method, path)


# --- schemathesis ----------------------------------------------------------------------------


def _operation_labels() -> list[str]:
    """The API operations, read from the spec of an app built only to describe itself."""
    from newsletter.core.config import load_settings

    app = create_app(load_settings(secret_key="spec-only", database_url="sqlite:///:memory:"))
    spec = schemathesis.openapi.from_dict(app.openapi())  # no database here to hold a token
    return sorted(
        op.ok().label for op in spec.get_all_operations() if op.ok().path.startswith("/api/v1/")
    )


@pytest.mark.parametrize("label", _operation_labels())
def test_api_fuzz_finds_no_server_error(label: str, api_app: FastAPI, token: str) -> None:
    """schemathesis: generated requests (valid and not) never get a 5xx or break the schema."""
    settings: Settings = api_app.state.settings
    for n in range(3):  # some real rows, so generated ids 1..3 find someone
        roster.add_subscriber(settings, email=f"fuzz{n}@example.org", confirmed=n > 0)
    headers = {"Authorization": f"Bearer {token}"}
    spec = schemathesis.openapi.from_asgi("/openapi.json", api_app, headers=headers)
    operation = next(op.ok() for op in spec.get_all_operations() if op.ok().label == label)

    @given(case=operation.as_strategy())
    @hsettings(
        max_examples=40,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
        database=None,
    )
    def run(case: schemathesis.Case) -> None:
        # Every check but "schema-valid data is accepted": the server rightly refuses, with a
        # documented 400, values no JSON schema can rule out (an unknown time zone or series,
        # an address that is not deliverable syntax, an empty or header-less CSV).
        case.call_and_validate(headers=headers, excluded_checks=[positive_data_acceptance])

    run()
