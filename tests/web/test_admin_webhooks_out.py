"""Settings > Webhooks: add an endpoint (secret shown once), the delivery log, the test button, remove."""

from __future__ import annotations

import re

from web_helpers import csrf

PATH = "/admin/settings/webhooks"


def add(admin_client, url: str, events: list[str], include_email: bool = False):
    data: dict[str, object] = {"csrf_token": csrf(admin_client, PATH), "url": url, "events": events}
    if include_email:
        data["include_email"] = "on"
    return admin_client.post(PATH, data=data)


def test_a_new_endpoint_shows_its_secret_once(admin_client) -> None:
    r = add(admin_client, "https://hooks.example.net/in", ["subscribed", "confirmed"], True)
    assert r.status_code == 201
    secret = re.search(r"whsec_[A-Za-z0-9_-]+", r.text)
    assert secret
    again = admin_client.get(PATH)
    assert "https://hooks.example.net/in" in again.text
    assert secret.group(0) not in again.text and "whsec_" not in again.text
    assert "Includes email addresses." in again.text


def test_a_plain_http_address_elsewhere_is_refused(admin_client) -> None:
    r = add(admin_client, "http://hooks.example.net/in", ["subscribed"])
    assert r.status_code == 422
    assert "https://" in r.text and "whsec_" not in r.text
    assert add(admin_client, "https://hooks.example.net/in", []).status_code == 422


def test_the_test_button_queues_a_test_event_in_the_log(admin_client) -> None:
    add(admin_client, "https://hooks.example.net/in", ["subscribed"])
    page = admin_client.get(PATH).text
    assert "Nothing sent yet." in page
    [action] = re.findall(r'action="(/admin/settings/webhooks/\d+/test)"', page)
    r = admin_client.post(action, data={"csrf_token": csrf(admin_client, PATH)})
    assert r.status_code == 303
    log = admin_client.get(PATH).text
    row = re.search(r"<tr>\s*<td>test</td>.*?</tr>", log, re.S)
    assert row and "<td>pending</td>" in row.group(0) and "<td>0</td>" in row.group(0)


def test_removing_an_endpoint(admin_client) -> None:
    add(admin_client, "https://hooks.example.net/in", ["subscribed"])
    [action] = re.findall(
        r'action="(/admin/settings/webhooks/\d+/remove)"', admin_client.get(PATH).text
    )
    assert (
        admin_client.post(action, data={"csrf_token": csrf(admin_client, PATH)}).status_code == 303
    )
    assert "hooks.example.net" not in admin_client.get(PATH).text


def test_the_page_needs_sign_in_and_a_csrf_token(admin_client, settings) -> None:
    from web_helpers import admin_app_client

    with admin_app_client(settings) as stranger:
        assert stranger.get(PATH).status_code == 303
    r = admin_client.post(
        PATH, data={"url": "https://hooks.example.net/in", "events": ["subscribed"]}
    )
    assert r.status_code == 400
