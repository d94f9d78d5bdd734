"""/api/v1/broadcasts: list, create, get and cancel, with the API's token and error style."""

from __future__ import annotations

import datetime as dt

from fastapi import FastAPI
from fastapi.testclient import TestClient
from time_machine import TimeMachineFixture


def test_create_list_get_cancel(api: TestClient, time_machine: TimeMachineFixture) -> None:
    time_machine.move_to(dt.datetime(2027, 3, 1, 12, tzinfo=dt.UTC), tick=False)
    for email in ("ann@example.org", "bo@example.org"):
        r = api.post("/api/v1/subscribers", json={"email": email, "confirmed": True})
        assert r.status_code == 201, r.text
    letter = {"title": "A new group", "summary": "Starting in March.", "body_md": "Hello.\n"}
    r = api.post("/api/v1/broadcasts", json={**letter, "at": "2027-03-09", "archive": True})
    assert r.status_code == 201, r.text
    made = r.json()
    assert (made["recipients"], made["state"], made["in_archive"]) == (2, "scheduled", True)
    assert made["when"] == "2027-03-09 at each reader's usual time"
    assert [b["id"] for b in api.get("/api/v1/broadcasts").json()] == [made["id"]]
    assert api.get(f"/api/v1/broadcasts/{made['id']}").json()["slug"] == made["slug"]
    r = api.delete(f"/api/v1/broadcasts/{made['id']}")
    assert r.status_code == 200 and r.json()["state"] == "cancelled"
    assert r.json()["waiting"] == 0
    assert api.delete("/api/v1/broadcasts/999").status_code == 404
    assert api.get("/api/v1/broadcasts/999").status_code == 404


def test_bad_requests_get_a_clear_400(api: TestClient) -> None:
    base = {"title": "T", "body_md": "x"}
    for extra, words in (
        ({"audience": "everyone"}, "unknown audience"),
        ({"at": "whenever"}, "--at must be"),
        ({"title": " "}, "needs a title"),
    ):
        r = api.post("/api/v1/broadcasts", json={**base, **extra})
        assert r.status_code == 400 and words in r.json()["detail"], r.text
    assert api.post("/api/v1/broadcasts", json={**base, "colour": "red"}).status_code == 422


def test_a_token_is_needed(api_app: FastAPI) -> None:
    with TestClient(api_app, base_url="https://news.example.org") as client:
        assert client.get("/api/v1/broadcasts").status_code == 401
        assert client.post("/api/v1/broadcasts", json={}).status_code == 401
