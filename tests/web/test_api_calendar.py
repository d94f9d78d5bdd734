"""GET /api/v1/calendar and a subscriber's coming sends: the admin calendar's projection as data."""

from __future__ import annotations

import time_machine
from engine_support import add_person, ship, utc
from fastapi.testclient import TestClient

from newsletter.core.config import Settings

NOW = utc(2027, 1, 6, 12)  # a Wednesday: the calendar starts on Monday 4 January


def test_the_calendar_as_data(settings: Settings, api: TestClient) -> None:
    ship(settings, NOW)
    london = add_person(settings, NOW, "Europe/London")
    add_person(settings, NOW, "Europe/Paris")
    with time_machine.travel(NOW, tick=False):
        body = api.get("/api/v1/calendar?weeks=2").json()
        assert (body["start"], body["weeks"], body["zone"]) == ("2027-01-04", 2, "America/New_York")
        first = body["entries"][0]
        assert first["day"] == "2027-01-12" and first["series"] == "myths-about-psychotherapy"
        assert first["part"] == 1 and first["count"] == 2 and not first["broadcast"]
        assert {(t["zone"], t["time"], t["count"]) for t in first["local_times"]} == {
            ("Europe/London", "Tue 09:00", 1),
            ("Europe/Paris", "Tue 09:00", 1),
        }
        later = api.get("/api/v1/calendar?from=2027-01-20&weeks=1").json()
        assert later["start"] == "2027-01-18"
        assert [(e["day"], e["part"], e["count"]) for e in later["entries"]] == [
            ("2027-01-19", 2, 2)
        ]
        sends = api.get(f"/api/v1/subscribers/{london}/sends").json()
        assert [(s["series"], s["part"], s["local_date"]) for s in sends][:2] == [
            ("myths-about-psychotherapy", 1, "2027-01-12"),
            ("myths-about-psychotherapy", 2, "2027-01-19"),
        ]
        assert api.get("/api/v1/subscribers/999999/sends").status_code == 404


def test_bad_values_name_the_parameter(settings: Settings, api: TestClient) -> None:
    for query, name in (("from=2027-13-01", "from"), ("from=soon", "from"),
                        ("weeks=0", "weeks"), ("weeks=13", "weeks"), ("weeks=x", "weeks")):  # fmt: skip
        r = api.get(f"/api/v1/calendar?{query}")
        assert r.status_code == 422, query
        assert [e["loc"] for e in r.json()["detail"]] == [["query", name]], query
    assert TestClient(api.app).get("/api/v1/calendar").status_code == 401
