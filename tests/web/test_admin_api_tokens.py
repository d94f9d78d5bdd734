"""Settings > API tokens: a token made in the browser (shown once), used by a tool, listed with
when it was last used, revoked; a nameless one refused with the reason."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient
from web_helpers import csrf

PATH = "/admin/settings/tokens"
TOKEN_RE = re.compile(r"<code class=\"secret\">([^<]+)</code>")


def _make(admin_client: TestClient, name: str) -> tuple[int, str]:
    r = admin_client.post(PATH, data={"csrf_token": csrf(admin_client, PATH), "name": name})
    found = TOKEN_RE.search(r.text)
    return r.status_code, found.group(1) if found else ""


def _api(admin_client: TestClient, token: str) -> int:
    """A tool's request: the token alone, none of the admin's cookies (a client of its own)."""
    tool = TestClient(admin_client.app, base_url=str(admin_client.base_url))
    return tool.get("/api/v1/series", headers={"Authorization": f"Bearer {token}"}).status_code


def test_a_token_made_in_the_browser_works_once_shown_and_is_listed(
    admin_client: TestClient,
) -> None:
    assert "No tokens yet" in admin_client.get(PATH).text
    assert 'href="/admin/settings/tokens"' in admin_client.get("/admin/settings").text
    status, token = _make(admin_client, "  Website plugin ")
    assert status == 201 and token
    page = admin_client.get(PATH).text
    assert token not in page and "Website plugin" in page  # shown once, named as trimmed
    row = re.search(r"<td>Website plugin</td>.*?</tr>", page, re.S)
    assert row and "<td>never</td>" in row.group(0)
    assert _api(admin_client, token) == 200
    row = re.search(r"<td>Website plugin</td>.*?</tr>", admin_client.get(PATH).text, re.S)
    assert row and "<td>never</td>" not in row.group(0)  # its last use is shown


def test_a_nameless_token_is_refused_with_the_reason(admin_client: TestClient) -> None:
    r = admin_client.post(PATH, data={"csrf_token": csrf(admin_client, PATH), "name": "   "})
    assert r.status_code == 422 and not TOKEN_RE.search(r.text)
    assert "Not made: a token needs a name of 1 to 100 characters." in r.text
    assert "No tokens yet" in admin_client.get(PATH).text


def test_a_revoked_token_is_refused_by_the_api(admin_client: TestClient) -> None:
    _, keep = _make(admin_client, "Spreadsheet")
    _, token = _make(admin_client, "Old plugin")
    page = admin_client.get(PATH).text
    [_, old] = re.findall(r'action="(/admin/settings/tokens/\d+/revoke)"', page)
    r = admin_client.post(old, data={"csrf_token": csrf(admin_client, PATH)})
    assert r.status_code == 303
    assert _api(admin_client, token) == 401
    assert _api(admin_client, keep) == 200  # the other tool is untouched
    again = admin_client.post(
        old, data={"csrf_token": csrf(admin_client, PATH)}, follow_redirects=True
    )
    assert "already revoked" in again.text
    assert "Old plugin" not in admin_client.get(PATH).text
