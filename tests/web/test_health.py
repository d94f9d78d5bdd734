"""/healthz with beat, workers and the halt (public body, token, admin); /metrics' access rule,
directly and through a trusted proxy; the dashboard's health banner."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest
import redis
from fastapi.testclient import TestClient
from pydantic import SecretStr
from servers import uvicorn_thread
from web_helpers import dead_redis, sign_in

from newsletter.core.config import Settings
from newsletter.queue import liveness
from newsletter.queue.liveness import BEAT_SILENT_SECONDS
from newsletter.store.db import session_scope
from newsletter.store.halt import halt
from newsletter.web.app import create_app

PASSWORD = "a calm and long password"
BASE = "https://news.example.org"
METRICS_TOKEN = "m-token-123"
BEARER = {"Authorization": f"Bearer {METRICS_TOKEN}"}


@pytest.fixture
def r(settings: Settings) -> redis.Redis:
    return redis.Redis.from_url(str(settings.redis_url), decode_responses=True)


def now_of(r: redis.Redis) -> float:
    return liveness.redis_now(r)


@pytest.fixture
def web(settings: Settings) -> Iterator[TestClient]:
    app = create_app(
        settings.model_copy(
            update={
                "admin_password": SecretStr(PASSWORD),
                "metrics_token": SecretStr(METRICS_TOKEN),
            }
        )
    )
    with TestClient(app, base_url=BASE, follow_redirects=False) as c:
        yield c


def test_a_healthy_install_says_only_ok_in_public(web: TestClient, r: redis.Redis, settings):
    assert web.get("/healthz").json() == {"status": "ok"}
    liveness.record_tick(r, settings.redis_prefix, {"due": 0}, at=now_of(r) - 40)
    liveness.heartbeat(r, settings.redis_prefix, "celery@one")
    response = web.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}
    assert web.get("/healthz?verbose=1").json() == {"status": "ok"}  # no readings for strangers
    wrong = web.get("/healthz?verbose=1", headers={"Authorization": "Bearer wrong"})
    assert wrong.json() == {"status": "ok"}
    # The metrics token: every check, and with verbose the readings.
    assert web.get("/healthz", headers=BEARER).json() == {
        "status": "ok",
        "database": "ok",
        "redis": "ok",
    }
    detail = web.get("/healthz?verbose=1", headers=BEARER).json()["liveness"]
    assert detail["workers"] == 1 and 39 <= detail["last_tick_age_seconds"] < 100
    assert "celery@one" not in web.get("/healthz?verbose=1", headers=BEARER).text
    # A signed-in admin sees the same.
    sign_in(web)
    body = web.get("/healthz?verbose=1").json()
    assert body["database"] == body["redis"] == "ok" and body["liveness"]["workers"] == 1


def test_a_silent_beat_is_a_503(web: TestClient, r: redis.Redis, settings) -> None:
    liveness.record_tick(r, settings.redis_prefix, {}, at=now_of(r) - BEAT_SILENT_SECONDS - 5)
    response = web.get("/healthz")
    assert response.status_code == 503
    assert response.json() == {"status": "error", "failing": ["beat"]}  # a name, no reading
    named = web.get("/healthz", headers=BEARER)
    assert named.status_code == 503
    body = named.json()
    assert body["status"] == "error" and body["beat"] == "error: silent for 3 min"
    assert body["database"] == body["redis"] == "ok"
    liveness.record_tick(r, settings.redis_prefix, {})  # beat ticks again
    assert web.get("/healthz").status_code == 200


def test_no_worker_while_work_waits_is_a_503(web: TestClient, r: redis.Redis, settings) -> None:
    liveness.record_tick(r, settings.redis_prefix, {})
    r.zadd(f"{settings.redis_prefix}due", {"41": now_of(r) - 30})
    assert web.get("/healthz").json() == {"status": "error", "failing": ["workers"]}
    sign_in(web)
    body = web.get("/healthz").json()
    assert body["workers"] == "error: none alive while 1 wait"
    liveness.heartbeat(r, settings.redis_prefix, "celery@one")
    assert web.get("/healthz").status_code == 200


def test_a_halt_is_a_503_without_its_reason(web: TestClient, settings: Settings) -> None:
    with session_scope(settings.database_url) as session:
        halt(session, "SendGrid answered 401 for key SG.secret-ish")
    response = web.get("/healthz", headers=BEARER)
    assert response.status_code == 503
    assert response.json()["sending"] == "error: halted: the provider refused the credentials"
    assert "SG." not in response.text
    assert web.get("/healthz").json() == {"status": "error", "failing": ["sending"]}


def test_metrics_need_the_token(settings: Settings) -> None:
    app = create_app(settings.model_copy(update={"metrics_token": SecretStr(METRICS_TOKEN)}))
    with TestClient(app, base_url=BASE) as c:
        assert c.get("/metrics").status_code == 403
        assert c.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 403
        ok = c.get("/metrics", headers={"Authorization": "Bearer m-token-123"})
        assert ok.status_code == 200 and ok.headers["content-type"].startswith("text/plain")
        assert "newsletter_due_set_size 0.0" in ok.text
    local = TestClient(app, base_url=BASE, client=("127.0.0.1", 5000))
    assert local.get("/metrics").status_code == 403  # a token, once set, is needed from here too


def test_metrics_without_a_token_answer_this_machine_only(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = create_app(settings)
    monkeypatch.delenv("FORWARDED_ALLOW_IPS", raising=False)

    def status(host: str, headers: dict[str, str] | None = None) -> int:
        c = TestClient(app, base_url=BASE, client=(host, 5000))
        return c.get("/metrics", headers=headers).status_code

    assert TestClient(app, base_url=BASE).get("/metrics").status_code == 403  # "testclient"
    assert status("203.0.113.9") == 403
    assert status("localhost") == 403  # a name is never loopback, whoever wrote it
    for host in ("127.0.0.1", "::1"):
        response = TestClient(app, base_url=BASE, client=(host, 5000)).get("/metrics")
        assert response.status_code == 200 and "newsletter_can_send 1.0" in response.text
    # A request that came through a proxy is not "this machine", whatever the peer is.
    for header in ("X-Forwarded-For", "Forwarded", "X-Real-IP"):
        assert status("127.0.0.1", {header: "127.0.0.1"}) == 403, header
    # A server told to trust a proxy (compose sets FORWARDED_ALLOW_IPS) needs the token.
    monkeypatch.setenv("FORWARDED_ALLOW_IPS", "172.29.211.1")
    assert status("127.0.0.1") == 403


@pytest.mark.slow  # a uvicorn server per case
@pytest.mark.parametrize("forwarded", ["127.0.0.1", "localhost", "::1"])
@pytest.mark.parametrize("token", [None, METRICS_TOKEN])
def test_metrics_through_a_trusted_proxy_need_the_token(
    settings: Settings, forwarded: str, token: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real uvicorn trusting this test as its proxy (127.0.0.1): a peer that says the visitor
    is 127.0.0.1 or localhost gets nothing without the token (issue 22)."""
    monkeypatch.delenv("FORWARDED_ALLOW_IPS", raising=False)  # uvicorn's default trust
    secret = SecretStr(token) if token else None
    app = create_app(settings.model_copy(update={"metrics_token": secret}))
    with uvicorn_thread(app, forwarded_allow_ips="127.0.0.1") as (base, _):
        claim = {"X-Forwarded-For": forwarded}
        refused = httpx.get(base + "/metrics", headers=claim, timeout=30)
        assert refused.status_code == 403 and "newsletter_" not in refused.text
        wrong = httpx.get(
            base + "/metrics", headers={**claim, "Authorization": "Bearer nope"}, timeout=30
        )
        assert wrong.status_code == 403
        # Straight from this machine, no proxy header: allowed only while no token is set.
        direct = httpx.get(base + "/metrics", timeout=30).status_code
        assert direct == (403 if token else 200)
        if token:
            ok = httpx.get(base + "/metrics", headers={**claim, **BEARER}, timeout=30)
            assert ok.status_code == 200 and "newsletter_can_send" in ok.text


def test_dashboard_green_line_then_red_banner_then_clear(
    web: TestClient, r: redis.Redis, settings: Settings
) -> None:
    sign_in(web)
    page = web.get("/admin").text
    assert 'data-health="idle"' in page and "Sending has not started yet" in page
    liveness.record_tick(r, settings.redis_prefix, {}, at=now_of(r) - 40)
    liveness.heartbeat(r, settings.redis_prefix, "celery@one")
    liveness.heartbeat(r, settings.redis_prefix, "celery@two")
    page = web.get("/admin").text
    assert re.search(
        r'notice-ok health-line" role="status" data-health="ok">\s*Sending: checked 4\d s ago',
        page,
    )
    liveness.record_tick(r, settings.redis_prefix, {}, at=now_of(r) - 400)
    page = web.get("/admin").text
    assert 'data-health="beat-silent"' in page and "Sending is stopped" in page
    assert 'data-health="ok"' not in page
    liveness.record_tick(r, settings.redis_prefix, {})
    page = web.get("/admin").text
    assert 'data-health="beat-silent"' not in page and 'data-health="ok"' in page


def test_dashboard_warns_while_unsigned_webhooks_are_allowed(settings: Settings) -> None:
    for allow, shown in ((True, True), (False, False)):
        app = create_app(
            settings.model_copy(
                update={"admin_password": SecretStr(PASSWORD), "webhook_allow_unsigned": allow}
            )
        )
        with TestClient(app, base_url=BASE, follow_redirects=False) as c:
            sign_in(c)
            assert ('data-health="unsigned-webhooks"' in c.get("/admin").text) is shown


def test_metrics_still_answer_with_redis_down(settings: Settings) -> None:
    app = create_app(settings.model_copy(update={"metrics_token": SecretStr("m-token-123")}))
    app.state.redis = dead_redis()
    with TestClient(app, base_url=BASE) as c:
        response = c.get("/metrics", headers={"Authorization": "Bearer m-token-123"})
        assert response.status_code == 200
        assert "# TYPE newsletter_sends_total counter" in response.text
        assert "newsletter_due_now" not in response.text
        assert c.get("/healthz").json() == {"status": "error", "failing": ["redis"]}
        assert c.get("/healthz", headers=BEARER).json()["redis"].startswith("error")
