"""Routes: POST /webhooks/sendgrid — the signed SendGrid Event Webhook."""

from __future__ import annotations

import json
import logging
import time
from functools import lru_cache

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sendgrid.helpers.eventwebhook import EventWebhook
from sendgrid.helpers.eventwebhook.eventwebhook_header import EventWebhookHeader
from starlette.concurrency import run_in_threadpool

from newsletter.core.config import Settings
from newsletter.engine import events

log = logging.getLogger(__name__)
router = APIRouter()

MAX_BODY_BYTES = 8 * 1024 * 1024  # SendGrid posts ≤ 768 KB per batch; leave room, refuse floods


@lru_cache(maxsize=4)
def _verifier(public_key: str) -> EventWebhook:
    return EventWebhook(public_key)


@lru_cache(maxsize=1)
def _warn_unsigned() -> None:
    log.warning(
        "webhook: NEWSLETTER_SENDGRID_WEBHOOK_PUBLIC_KEY is not set; accepting unsigned events"
    )


def _problem(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def check_signature(
    settings: Settings, raw: bytes, signature: str | None, stamp: str | None
) -> JSONResponse | None:
    """None when the batch is signed by SendGrid's key, recently; else the refusal to send."""
    key = settings.sendgrid_webhook_public_key
    if not key:
        _warn_unsigned()
        return None
    if not signature or not stamp:
        return _problem(401, "signature headers missing")
    try:
        age = abs(time.time() - int(stamp))
    except ValueError:
        return _problem(403, "bad timestamp")
    if age > settings.webhook_tolerance_seconds:
        return _problem(403, "timestamp outside the allowed window")
    try:
        verifier = _verifier(key)
    except Exception:
        log.error("webhook: NEWSLETTER_SENDGRID_WEBHOOK_PUBLIC_KEY is not a valid public key")
        return _problem(503, "webhook key misconfigured")
    try:
        ok = verifier.verify_signature(raw.decode("utf-8"), signature, stamp)
    except Exception:  # binascii.Error, UnicodeDecodeError, cryptography errors
        ok = False
    return None if ok else _problem(403, "bad signature")


async def _read_limited(request: Request, limit: int) -> bytes | None:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


@router.post("/webhooks/sendgrid", include_in_schema=False)
async def sendgrid_events(request: Request) -> JSONResponse:
    settings: Settings = request.app.state.settings
    raw = await _read_limited(request, MAX_BODY_BYTES)
    if raw is None:
        return _problem(413, "body too large")
    refused = check_signature(
        settings,
        raw,
        request.headers.get(EventWebhookHeader.SIGNATURE),
        request.headers.get(EventWebhookHeader.TIMESTAMP),
    )
    if refused is not None:
        return refused
    try:
        payload = json.loads(raw)
    except ValueError:  # also bytes that are not UTF-8/16/32
        return _problem(400, "body is not JSON")
    except RecursionError:
        return _problem(400, "body is nested too deeply")
    if not isinstance(payload, list):
        return _problem(400, "body must be a JSON array of events")
    report = await run_in_threadpool(events.process_sendgrid, settings, payload)
    return JSONResponse(report.as_dict())
