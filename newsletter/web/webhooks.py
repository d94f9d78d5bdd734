"""Routes: POST /webhooks/sendgrid — the signed SendGrid Event Webhook."""

from __future__ import annotations

import datetime as dt
import hashlib
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
from newsletter.services import metrics, people
from newsletter.web.pages import settings_of
from newsletter.web.security import body_limit, hit_rate_limit

log = logging.getLogger(__name__)
router = APIRouter()

PATH = "/webhooks/sendgrid"
# Posts per IP address per minute (SendGrid posts from many addresses, a batch at a time).
RATE_LIMIT = 120
RATE_WINDOW_SECONDS = 60
UNSIGNED_REFUSED = (
    "unsigned webhook posts are refused: set NEWSLETTER_SENDGRID_WEBHOOK_PUBLIC_KEY to the "
    "verification key from SendGrid (Settings > Mail Settings > Event Webhook > Signed Event "
    "Webhook), or NEWSLETTER_WEBHOOK_ALLOW_UNSIGNED=true for a local trial only"
)


@lru_cache(maxsize=4)
def _verifier(public_key: str) -> EventWebhook:
    return EventWebhook(public_key)


@lru_cache(maxsize=1)
def _warn_unsigned() -> None:
    log.warning(
        "webhook: NEWSLETTER_WEBHOOK_ALLOW_UNSIGNED is on and no public key is set: accepting "
        "unsigned events (anyone can post bounces and spam reports)"
    )


def _problem(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def check_signature(
    settings: Settings, raw: bytes, signature: str | None, stamp: str | None
) -> JSONResponse | None:
    """None when the batch is signed by SendGrid's key, recently; else the refusal to send."""
    key = settings.sendgrid_webhook_public_key
    if not key:
        if not settings.webhook_allow_unsigned:
            return _problem(403, UNSIGNED_REFUSED)
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
    if declared is not None and declared.isdecimal() and int(declared) > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


@router.post(PATH, include_in_schema=False)
async def sendgrid_events(request: Request) -> JSONResponse:
    """Every post is noted before it is read and its answer after (engine.absence: a post we
    did not answer 2xx will come again, so missing events prove nothing meanwhile)."""
    # effective settings: a public key saved by Settings > Mail counts (store.provider)
    settings: Settings = await run_in_threadpool(settings_of, request)
    try:
        post_id = await run_in_threadpool(events.post_arrived, settings)
    except Exception:
        log.exception("webhook: could not note the post; refused so that it comes again")
        return _problem(503, "try again later")
    status, newest = 500, None  # an exception (a rate limit too) is an answer other than 2xx
    body: list[str] = []  # the body's hash, once read (a retry of the same batch matches it)
    try:
        response, newest = await _answer(request, settings, body)
        status = response.status_code
        return response
    finally:
        digest = body[0] if body else None
        await run_in_threadpool(events.post_answered, settings, post_id, status, newest, digest)


async def _answer(
    request: Request, settings: Settings, body: list[str]
) -> tuple[JSONResponse, dt.datetime | None]:
    """The post read, checked and its events applied: the answer, and how far they reached
    (the body's sha256 is appended to `body` as soon as it is read)."""
    await run_in_threadpool(hit_rate_limit, request, "webhook", RATE_LIMIT, RATE_WINDOW_SECONDS)
    raw = await _read_limited(request, body_limit(PATH))
    if raw is None:
        return _problem(413, "body too large"), None
    body.append(hashlib.sha256(raw).hexdigest())
    refused = check_signature(
        settings,
        raw,
        request.headers.get(EventWebhookHeader.SIGNATURE),
        request.headers.get(EventWebhookHeader.TIMESTAMP),
    )
    if refused is not None:
        return refused, None
    try:
        payload = json.loads(raw)
    except ValueError:  # also bytes that are not UTF-8/16/32
        return _problem(400, "body is not JSON"), None
    except RecursionError:
        return _problem(400, "body is nested too deeply"), None
    if not isinstance(payload, list):
        return _problem(400, "body must be a JSON array of events"), None
    metrics.webhook_events(payload)
    payload = await run_in_threadpool(people.forget_erased_in_events, settings, payload)
    report = await run_in_threadpool(events.process_sendgrid, settings, payload)
    # Only what was posted (and which events could not be read: decided from the body alone),
    # never what it did: a suppressed or confirmed count would tell a stranger whether an
    # address is on the list.
    answer = {"ok": True, "received": report.received, "malformed": report.malformed}
    return JSONResponse(answer), report.newest_handed
