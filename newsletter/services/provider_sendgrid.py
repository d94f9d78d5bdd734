"""SendGrid's account API as the Settings page needs it: a key's scopes, and our signed Event Webhook.

Requests and answers follow SendGrid's published OpenAPI documents (twilio/sendgrid-oai,
spec/json/tsg_scopes_v3.json and spec/json/tsg_webhooks_v3.json @ 2a6ae1824abb462e3903687a9188df2270475ffa):
- `GET /v3/scopes` -> 200 `{"scopes": [...]}` (401 `{"errors": [{"field": null, "message": ...}]}`).
- `GET /v3/user/webhooks/event/settings/all` -> 200 `{"max_allowed": n, "webhooks": [{id, url, enabled, ...}]}`.
- `POST /v3/user/webhooks/event/settings` (EventWebhookRequest: `url` required, one boolean a
  kind of event, `enabled`, `friendly_name`) -> 201 the webhook with its `id`; signing cannot be
  turned on here ("a separate process").
- `PATCH /v3/user/webhooks/event/settings/{id}` (EventWebhookRequest) -> 200 the webhook.
- `PATCH /v3/user/webhooks/event/settings/signed/{id}` `{"enabled": true}` -> 200
  `{"id": ..., "public_key": "<base64 DER P-256 key>"}`; `GET` on the same path returns the same.
The key needs `mail.send` and the Event Webhook scopes `user.webhooks.event.settings.read` and
`.update` (SendGrid's "API Key Permissions" list, Webhook group).
"""

from __future__ import annotations

import json
import urllib.error
from dataclasses import dataclass
from typing import Any

from python_http_client.exceptions import HTTPError
from sendgrid import SendGridAPIClient

from newsletter.core.config import Settings

TIMEOUT_SECONDS = 15
SEND_SCOPE = "mail.send"
WEBHOOK_SCOPES = ("user.webhooks.event.settings.read", "user.webhooks.event.settings.update")
REQUIRED_SCOPES = (SEND_SCOPE, *WEBHOOK_SCOPES)
# What each missing scope is called in SendGrid's key editor.
SCOPE_NAMES = {
    SEND_SCOPE: "Mail Send",
    WEBHOOK_SCOPES[0]: "Mail Settings > Event Webhook (read)",
    WEBHOOK_SCOPES[1]: "Mail Settings > Event Webhook (update)",
}
FRIENDLY_NAME = "newsletter"
# The events the engine reads (engine/events.py); opens and clicks only when tracking asks.
EVENTS = ("processed", "delivered", "deferred", "bounce", "dropped", "spam_report", "unsubscribe",
          "group_unsubscribe")  # fmt: skip
TRACKED = {"open": ("opens", "on"), "click": ("clicks", "on")}


class SendGridRefused(Exception):
    """SendGrid (or the way to it) said no; the message is a sentence for the therapist."""


@dataclass(frozen=True)
class Webhook:
    id: str
    public_key: str


def _client(settings: Settings, key: str) -> Any:
    client = SendGridAPIClient(api_key=key, host=settings.sendgrid_host).client
    client.timeout = TIMEOUT_SECONDS
    return client


def _errors(exc: HTTPError) -> str:
    try:
        body = json.loads(exc.body or b"{}")
        messages = [str(e.get("message", "")) for e in body.get("errors", [])]
    except (ValueError, AttributeError, TypeError):
        messages = []
    return "; ".join(m for m in messages if m)[:300] or f"HTTP {exc.status_code}"


def _call(client: Any, path: str, method: str, body: Any = None) -> Any:
    """One request to /v3/<path>; the parsed JSON answer, or SendGridRefused."""
    endpoint = getattr(client._(path), method)
    try:
        response = endpoint(request_body=body) if body is not None else endpoint()
    except HTTPError as exc:
        if exc.status_code == 401:
            raise SendGridRefused(
                "SendGrid did not accept this API key: it may be mistyped, deleted or revoked."
            ) from None
        if exc.status_code == 403:
            raise SendGridRefused(
                f"SendGrid refused this key access ({_errors(exc)}): give it the permissions "
                "listed below."
            ) from None
        raise SendGridRefused(f"SendGrid answered: {_errors(exc)}.") from None
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        raise SendGridRefused(f"Could not reach SendGrid ({exc}); try again in a minute.") from None
    raw = response.body or b"{}"
    try:
        return json.loads(raw)
    except ValueError:
        raise SendGridRefused("SendGrid's answer was not readable; try again.") from None


def scopes(settings: Settings, key: str) -> frozenset[str]:
    """The scopes this key holds (GET /v3/scopes)."""
    answer = _call(_client(settings, key), "scopes", "get")
    found = answer.get("scopes") if isinstance(answer, dict) else None
    if not isinstance(found, list):
        raise SendGridRefused("SendGrid's answer did not list the key's permissions.")
    return frozenset(str(s) for s in found)


def missing_scopes(held: frozenset[str]) -> list[str]:
    """The permissions a key lacks, as SendGrid's key editor names them."""
    return [SCOPE_NAMES[s] for s in REQUIRED_SCOPES if s not in held]


def webhook_body(settings: Settings, url: str) -> dict[str, Any]:
    """The EventWebhookRequest for our webhook: enabled, at `url`, the events the engine reads."""
    body: dict[str, Any] = {"enabled": True, "url": url, "friendly_name": FRIENDLY_NAME}
    body |= {name: True for name in EVENTS}
    body |= {name: settings.tracking in when for name, when in TRACKED.items()}
    body["group_resubscribe"] = False
    return body


def configure_webhook(settings: Settings, key: str, url: str) -> Webhook:
    """Our Event Webhook at `url`, enabled and signed: the one already posting to `url` is
    updated (SendGrid allows one webhook a URL), else one is created; then signing is turned on
    and its public key read."""
    client = _client(settings, key)
    listing = _call(client, "user/webhooks/event/settings/all", "get")
    hooks = listing.get("webhooks") if isinstance(listing, dict) else None
    existing = next(
        (h for h in hooks or [] if isinstance(h, dict) and h.get("url") == url and h.get("id")),
        None,
    )
    body = webhook_body(settings, url)
    if existing is not None:
        hook = _call(client, f"user/webhooks/event/settings/{existing['id']}", "patch", body)
    else:
        hook = _call(client, "user/webhooks/event/settings", "post", body)
    hook_id = str(hook.get("id") or "") if isinstance(hook, dict) else ""
    if not hook_id:
        raise SendGridRefused("SendGrid did not say which webhook it set up; try again.")
    signed = _call(
        client, f"user/webhooks/event/settings/signed/{hook_id}", "patch", {"enabled": True}
    )
    public_key = str(signed.get("public_key") or "") if isinstance(signed, dict) else ""
    if not public_key:
        again = _call(client, f"user/webhooks/event/settings/signed/{hook_id}", "get")
        public_key = str(again.get("public_key") or "") if isinstance(again, dict) else ""
    if not public_key:
        raise SendGridRefused("SendGrid turned signing on but gave no public key; try again.")
    return Webhook(hook_id, public_key)
