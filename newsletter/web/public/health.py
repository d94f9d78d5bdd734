"""Public routes: the health check (database, Redis, and whether anything can be sent) and /metrics.

/healthz answers 200 `{"status": "ok"}` on a healthy install and 503 `{"status": "error",
"failing": ["beat"]}` when the database or Redis is unreachable or sending cannot happen (the
DESIGN's "503 naming beat, workers or sending"): the failing parts' names are all a stranger
learns — no error text, counts or ages.
For the metrics token (`Authorization: Bearer …`) or a signed-in admin the body also names each
check (`database`, `redis`, and when failing `sending`, `beat` or `workers`, as `error: …`), and
`?verbose=1` adds the readings (tick and beat ages, worker count, due and leased counts) as
`liveness`. Never personal data or the halt reason: the dashboard says the rest.

/metrics is Prometheus's text format: with NEWSLETTER_METRICS_TOKEN set, for a request with
`Authorization: Bearer <token>`; without it, only for a request straight from this machine
(a loopback peer, no proxy headers trusted: web/security.direct_from_this_machine).
"""

from __future__ import annotations

import hmac

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from newsletter.queue import liveness
from newsletter.services import alerts, metrics
from newsletter.store import db
from newsletter.web.admin.common import current_session
from newsletter.web.pages import settings_of
from newsletter.web.security import direct_from_this_machine, redis_for

router = APIRouter()

CHECK_OF = {"halted": "sending", "beat-silent": "beat", "workers-missing": "workers"}


@router.get("/healthz")
def healthz(request: Request, verbose: bool = False) -> JSONResponse:
    settings = settings_of(request)
    checks: dict[str, str] = {}
    try:
        db.ping(settings.database_url)
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
    body: dict[str, object] = {"status": "ok" if healthy else "error"}
    if not healthy:  # which part, never why or how many: a monitor can page the right person
        body["failing"] = [name for name, value in checks.items() if value != "ok"]
    if not readings_allowed(request):
        return JSONResponse(body, status_code=200 if healthy else 503)
    body.update(checks)
    if verbose and status is not None and status.reading is not None:
        reading = status.reading.as_dict()
        reading["workers"] = len(status.reading.workers)  # a count: hostnames stay private
        body["liveness"] = reading
    return JSONResponse(body, status_code=200 if healthy else 503)


def token_given(request: Request) -> bool:
    """The request carries `Authorization: Bearer <NEWSLETTER_METRICS_TOKEN>` (one is set)."""
    token = settings_of(request).metrics_token
    if token is None:
        return False
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    expected = token.get_secret_value().encode()
    return scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(), expected)


def metrics_allowed(request: Request) -> bool:
    """The token when one is set; without one, only a request straight from this machine."""
    if settings_of(request).metrics_token is not None:
        return token_given(request)
    return direct_from_this_machine(request)


def readings_allowed(request: Request) -> bool:
    """/healthz's checks and readings: for the metrics token or a signed-in admin."""
    return token_given(request) or current_session(request) is not None


@router.get("/metrics", include_in_schema=False)
async def metrics_page(request: Request) -> Response:
    if not metrics_allowed(request):
        return PlainTextResponse(
            "metrics need 'Authorization: Bearer <NEWSLETTER_METRICS_TOKEN>'; without a token "
            "set, they answer only requests straight from this machine (no proxy headers)\n",
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
