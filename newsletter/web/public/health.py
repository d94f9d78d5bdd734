"""Public routes: the health check (database, Redis, and whether anything can be sent) and /metrics.

/healthz answers 200 with `{"status": "ok", "database": "ok", "redis": "ok"}` on a healthy
install (the body uptime checks and compose's healthcheck expect), and 503 with an `error: …`
entry for each problem: the database or Redis unreachable, and, when sending cannot happen,
`sending` (the provider refused the credentials), `beat` (silent for 3 minutes) or `workers`
(none alive while deliveries wait). `?verbose=1` adds the readings (tick and beat ages, worker
count, due and leased counts) as `liveness`. No personal data and no halt reason here: this page
is public; the dashboard says the rest.

/metrics is Prometheus's text format: with NEWSLETTER_METRICS_TOKEN set, for a request with
`Authorization: Bearer <token>`; without it, only for clients on this machine (127.0.0.1, ::1).
"""

from __future__ import annotations

import hmac
import ipaddress

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from sqlalchemy import text

from newsletter.queue import liveness
from newsletter.services import alerts, metrics
from newsletter.store.db import session_scope
from newsletter.web.pages import settings_of
from newsletter.web.security import redis_for

router = APIRouter()

CHECK_OF = {"halted": "sending", "beat-silent": "beat", "workers-missing": "workers"}


@router.get("/healthz")
def healthz(request: Request, verbose: bool = False) -> JSONResponse:
    settings = settings_of(request)
    checks: dict[str, str] = {}
    try:
        with session_scope(settings.database_url) as session:
            session.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = f"error: {type(exc).__name__}"
    redis = redis_for(request)
    try:
        redis.ping()
        checks["redis"] = "ok"
    except Exception as exc:
        checks["redis"] = f"error: {type(exc).__name__}"
    status = alerts.status(settings, redis) if checks["redis"] == "ok" else None
    for problem in status.problems if status else []:
        if problem.key in CHECK_OF:  # a bad day of failures is the dashboard's, not a 503
            checks[CHECK_OF[problem.key]] = f"error: {problem.check}"
    healthy = all(v == "ok" for v in checks.values())
    body: dict[str, object] = {"status": "ok" if healthy else "error", **checks}
    if verbose and status is not None and status.reading is not None:
        reading = status.reading.as_dict()
        reading["workers"] = len(status.reading.workers)  # a count: hostnames stay private
        body["liveness"] = reading
    return JSONResponse(body, status_code=200 if healthy else 503)


LOCAL = ("127.0.0.1", "::1", "localhost")


def metrics_allowed(request: Request) -> bool:
    token = settings_of(request).metrics_token
    if token is not None:
        given = request.headers.get("authorization", "")
        scheme, _, value = given.partition(" ")
        expected = token.get_secret_value().encode()
        return scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(), expected)
    host = request.client.host if request.client else ""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host in LOCAL


@router.get("/metrics", include_in_schema=False)
async def metrics_page(request: Request) -> Response:
    if not metrics_allowed(request):
        return PlainTextResponse(
            "metrics are for this machine only, or set NEWSLETTER_METRICS_TOKEN and send "
            "'Authorization: Bearer <token>'\n",
            status_code=403,
        )
    settings = settings_of(request)
    body = await run_in_threadpool(metrics.page, settings, redis_for(request))
    return Response(body, media_type=metrics.CONTENT_TYPE)


def dashboard_context(request: Request) -> dict[str, object]:
    """What the dashboard's health include (admin/_health.html) shows."""
    settings = settings_of(request)
    status = alerts.status(settings, redis_for(request))
    age = status.reading.tick_age if status.reading else None
    return {
        "health": status,
        "tick_age": liveness.format_age(age),
        "unsigned_webhooks": settings.webhook_allow_unsigned
        and not settings.sendgrid_webhook_public_key,
    }
