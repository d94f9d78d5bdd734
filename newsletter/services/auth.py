"""Admin authentication: password (Argon2 hash or env), signed session cookies, API tokens."""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import hmac
import ipaddress
import logging
import secrets
import time
from dataclasses import dataclass
from typing import Any, cast

import anyio
import anyio.to_thread
import redis
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from itsdangerous import BadSignature, SignatureExpired, TimestampSigner, URLSafeTimedSerializer
from sqlalchemy import select
from sqlalchemy.orm import Session

from newsletter.core.config import Settings
from newsletter.queue.connection import redis_client
from newsletter.store.db import session_scope
from newsletter.store.models import ApiToken, AppState, utcnow

PASSWORD_KEY = "admin_password_hash"
SESSION_COOKIE = "nl_admin"
EPOCH_KEY = "admin_session_epoch"
SESSION_SECONDS = 8 * 3600  # a working day; then log in again
# Login limits: a client's first LOGIN_LIMIT failures are free; after that each failure makes it
# wait LOGIN_BASE_DELAY, then twice as long, and so on up to LOGIN_MAX_DELAY. Failures from
# everywhere (LOGIN_GLOBAL_LIMIT per LOGIN_GLOBAL_WINDOW) only shrink every client's free
# failures to LOGIN_FREE_UNDER_ATTACK: the global count slows guessing, it never refuses a
# client that has not failed itself, so a stranger can't lock the therapist out.
LOGIN_LIMIT = 5  # free failed attempts per client …
LOGIN_WINDOW_SECONDS = 24 * 3600  # … counted over this window (a good login clears them)
LOGIN_BASE_DELAY = 30  # seconds to wait after the first failure past the free ones
LOGIN_MAX_DELAY = 3600  # the wait stops growing here
LOGIN_GLOBAL_LIMIT = 20  # failed attempts from everywhere per window …
LOGIN_GLOBAL_WINDOW = 15 * 60  # … after which every client has …
LOGIN_FREE_UNDER_ATTACK = 1  # … only this many free failures
TOKEN_PREFIX = "nl_"
MIN_PASSWORD_LENGTH = 10
IPV6_BLOCK = 64  # one IPv6 client is its /64: a home or a server gets a whole one
# Argon2 takes ~50 ms of CPU and 64 MiB per check: never on the event loop, and at most
# HASH_SLOTS at once (in worker threads of their own, so waiting logins hold no thread and the
# pool every other page runs in stays free).
HASH_SLOTS = 2
hash_slots = anyio.CapacityLimiter(HASH_SLOTS)

_hasher = PasswordHasher()
log = logging.getLogger(__name__)


class AuthError(Exception):
    """Login refused; the message is safe to show."""


class LoginUnavailable(AuthError):
    """The login rate limit can't be checked (Redis unreachable): sign-in is refused until it can.

    The web app answers it with the login page and this message (503), never a 500.
    """

    def __init__(self) -> None:
        super().__init__(
            "Signing in isn't possible right now: the attempt counter (Redis) can't be reached. "
            "Please try again in a minute; if it keeps happening, check that Redis is running."
        )


# --- password ------------------------------------------------------------------------------


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def hash_matches(hashed: str, password: str) -> bool:
    """Whether `password` matches an Argon2 hash (tens of ms of CPU: run it in a thread)."""
    try:
        return _hasher.verify(hashed, password)
    except (VerificationError, InvalidHashError):
        return False


# Checked against when no account has the address given, so an unknown address costs what a
# known one does (the time taken says nothing about who has an account).
@functools.cache
def dummy_hash() -> str:
    return _hasher.hash("no account has this address")


def set_password(session: Session, password: str) -> None:
    """Store an Argon2 hash of the admin password (replaces the previous one)."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValueError(f"the password needs at least {MIN_PASSWORD_LENGTH} characters")
    row = session.get(AppState, PASSWORD_KEY)
    if row is None:
        session.add(AppState(key=PASSWORD_KEY, value=hash_password(password)))
    else:
        row.value = hash_password(password)
    end_all_sessions(session)  # whoever knew the old password is signed out


def stored_hash(session: Session) -> str | None:
    row = session.get(AppState, PASSWORD_KEY)
    return row.value if row else None


def password_configured(settings: Settings, session: Session) -> bool:
    return settings.admin_password is not None or stored_hash(session) is not None


def env_password_ignored(settings: Settings, session: Session) -> bool:
    """NEWSLETTER_ADMIN_PASSWORD is set but no longer signs in: a stored hash replaced it."""
    return settings.admin_password is not None and stored_hash(session) is not None


def verify_password(settings: Settings, session: Session, password: str) -> bool:
    """True when the password matches the stored hash or, while none is stored,
    NEWSLETTER_ADMIN_PASSWORD. Once `admin set-password` stored a hash, the variable no longer
    signs in (a password left in a compose file must not outlive the one that replaced it).

    Runs Argon2 (tens of ms of CPU): from async code, call `check_password` instead.
    """
    hashed = stored_hash(session)
    if hashed:
        try:
            return _hasher.verify(hashed, password)
        except (VerificationError, InvalidHashError):
            return False
    if settings.admin_password is None:
        return False
    expected = settings.admin_password.get_secret_value()
    return bool(expected) and hmac.compare_digest(
        expected.encode("utf-8"), password.encode("utf-8")
    )


@dataclass(frozen=True)
class PasswordCheck:
    """What one login attempt learned: whether a password is configured and this one matches,
    the session generation and password source a cookie made now must carry, and whether
    NEWSLETTER_ADMIN_PASSWORD is set but ignored (the login page says so)."""

    configured: bool
    ok: bool
    epoch: str
    fingerprint: str
    env_ignored: bool


def _check_password_now(settings: Settings, password: str) -> PasswordCheck:
    with session_scope(settings.database_url) as session:
        configured = password_configured(settings, session)
        ok = configured and verify_password(settings, session, password)
        return PasswordCheck(
            configured,
            ok,
            session_epoch(session),
            password_fingerprint(settings, session),
            env_password_ignored(settings, session),
        )


async def check_password(settings: Settings, password: str) -> PasswordCheck:
    """The login's password check, in a worker thread under `hash_slots` (at most HASH_SLOTS
    at once): the event loop keeps serving every other page while Argon2 runs."""
    return await anyio.to_thread.run_sync(
        _check_password_now, settings, password, limiter=hash_slots
    )


def password_fingerprint(settings: Settings, session: Session) -> str:
    """A short keyed digest of the current password source (stored Argon2 hash and/or
    NEWSLETTER_ADMIN_PASSWORD): a session cookie carries it, so changing either ends every session.

    Keyed with the secret key (the cookie's payload is readable): it says nothing about the password.
    """
    env = settings.admin_password.get_secret_value() if settings.admin_password else ""
    source = f"db:{stored_hash(session) or ''}\0env:{hashlib.sha256(env.encode()).hexdigest()}"
    key = f"newsletter.admin-password-source:{settings.secret}".encode()
    return hmac.new(key, source.encode("utf-8"), hashlib.sha256).hexdigest()[:32]


# --- sessions -----------------------------------------------------------------------------


@dataclass(frozen=True)
class AdminSession:
    """A valid session cookie: whose (`account` 0 is the operator, who signs in with
    NEWSLETTER_ADMIN_PASSWORD or the `admin set-password` one) and of which generation."""

    issued_at: float
    epoch: str
    account: int = 0
    generation: int = 0
    role: str = "owner"  # filled in from the account by web/admin/common.current_session


def clock() -> float:
    """Seconds since the epoch (tests replace it to age a session)."""
    return time.time()


class _Signer(TimestampSigner):
    def get_timestamp(self) -> int:
        return int(clock())


def _session_serializer(settings: Settings) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(settings.secret, salt="newsletter.admin-session", signer=_Signer)


def session_epoch(session: Session) -> str:
    """The current session generation: sessions of an older one are void (logout, new password)."""
    row = session.get(AppState, EPOCH_KEY)
    return row.value if row else "0"


def end_all_sessions(session: Session) -> None:
    """Void every admin session cookie handed out so far."""
    value = secrets.token_hex(8)
    row = session.get(AppState, EPOCH_KEY)
    if row is None:
        session.add(AppState(key=EPOCH_KEY, value=value))
    else:
        row.value = value
    session.flush()


def make_session(
    settings: Settings,
    epoch: str = "0",
    fingerprint: str = "",
    account: int = 0,
    generation: int = 0,
) -> str:
    """A new signed session cookie value for this session generation and password source
    (the operator's), or for this account at its generation."""
    payload = {
        "v": 1,
        "e": epoch,
        "p": fingerprint,
        "a": account,
        "g": generation,
        "n": secrets.token_urlsafe(12),
    }
    return str(_session_serializer(settings).dumps(payload))


def read_session(
    settings: Settings,
    value: str | None,
    epoch: str | None = None,
    max_age: int = SESSION_SECONDS,
    fingerprint: str | None = None,
) -> AdminSession | None:
    """The session inside a valid, unexpired cookie of the current generation, else None.

    With `fingerprint` (password_fingerprint), a cookie made under another password is refused.
    """
    if not value or len(value) > 4096:
        return None
    try:
        payload, issued = _session_serializer(settings).loads(
            value, max_age=max_age, return_timestamp=True
        )
    except (SignatureExpired, BadSignature):
        return None
    if not isinstance(payload, dict) or not isinstance(payload.get("e"), str):
        return None
    if epoch is not None and not hmac.compare_digest(payload["e"], epoch):
        return None
    account, generation = payload.get("a", 0), payload.get("g", 0)
    if not isinstance(account, int) or not isinstance(generation, int):
        return None
    if fingerprint is not None and not account:  # an account's cookie carries its generation
        made_under = payload.get("p")
        if not isinstance(made_under, str) or not hmac.compare_digest(made_under, fingerprint):
            return None
    return AdminSession(issued.timestamp(), payload["e"], account, generation)


def cookie_options(settings: Settings, max_age: int = SESSION_SECONDS) -> dict[str, Any]:
    """Keyword arguments for Response.set_cookie: HttpOnly, SameSite=Lax, Secure on https."""
    return {
        "max_age": max_age,
        "httponly": True,
        "samesite": "lax",
        "secure": settings.public_is_https,
        "path": "/",
    }


# --- login rate limit (Redis) --------------------------------------------------------------


def redis_for(settings: Settings) -> redis.Redis:
    """The shared Redis client (the queue's, which may start an embedded server)."""
    client: redis.Redis = redis_client(settings)
    return client


def client_block(client: str) -> str:
    """What one login client is: an IPv4 address, or the /64 an IPv6 address is in (its
    owner holds all 2^64 of them); an IPv4-mapped IPv6 address is its IPv4 address."""
    try:
        address = ipaddress.ip_address(client)
    except ValueError:
        return client  # not an address (a test client's name): itself
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network(f"{address}/{IPV6_BLOCK}", strict=False))
    return str(address)


def _client_key(settings: Settings, client: str) -> str:
    block = client_block(client)
    digest = hashlib.sha256(f"{settings.secret}:{block}".encode()).hexdigest()[:24]
    return f"{settings.redis_prefix}admin:login:{digest}"


def _wait_key(settings: Settings, client: str) -> str:
    """Present (with a TTL) while this client must wait before its next attempt."""
    return _client_key(settings, client).replace("admin:login:", "admin:login:wait:", 1)


def _global_key(settings: Settings) -> str:
    return f"{settings.redis_prefix}admin:login:all"


def login_delay(failures: int, free: int) -> int:
    """Seconds a client waits after its `failures`-th failure (0 while within its free ones)."""
    if failures < free:
        return 0
    return min(LOGIN_BASE_DELAY * 2 ** min(failures - free, 20), LOGIN_MAX_DELAY)


# INCR, and give the counter its window when it has none: on its first hit, or when an earlier
# EXPIRE was lost. Redis 6.2 (the embedded server) has no EXPIRE ... NX, hence a script; it is
# atomic, so concurrent hits never leave a counter without a TTL (which would lock out forever).
_COUNT_HIT = """
local n = redis.call('INCR', KEYS[1])
local ttl = redis.call('TTL', KEYS[1])
if ttl < 0 then
  redis.call('EXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
return {n, ttl}
"""


def count_hit(r: redis.Redis, key: str, window: int) -> tuple[int, int]:
    """Count one hit on `key` in a fixed window of `window` seconds: (hits so far, seconds left).

    Only commands Redis 6.2 has (INCR, TTL, EXPIRE in one Lua script).
    """
    count, ttl = cast(list[int], r.eval(_COUNT_HIT, 1, key, str(window)))
    return int(count), int(ttl)


_REDIS_DOWN = (redis.RedisError, OSError, RuntimeError)  # RuntimeError: embedded didn't start


def login_blocked(settings: Settings, client: str) -> int:
    """Seconds until this client may try again (0: allowed).

    Only the client's own failures make it wait (see LOGIN_LIMIT): a client that never failed
    is never refused, however many failures come from elsewhere. Raises LoginUnavailable when
    the counters can't be read: the limit fails closed.
    """
    try:
        left = int(redis_for(settings).pttl(_wait_key(settings, client)))
    except _REDIS_DOWN as exc:
        log.warning("admin login refused: rate limit not checked (%s)", type(exc).__name__)
        raise LoginUnavailable() from exc
    return 0 if left <= 0 else -(-left // 1000)  # whole seconds, rounded up


def record_failure(settings: Settings, client: str) -> int:
    """Count one failed login for this client and for everyone; the seconds this client must
    now wait before its next attempt (0: none). LoginUnavailable when it can't count."""
    try:
        r = redis_for(settings)
        failures, _ = count_hit(r, _client_key(settings, client), LOGIN_WINDOW_SECONDS)
        everyone, _ = count_hit(r, _global_key(settings), LOGIN_GLOBAL_WINDOW)
        free = LOGIN_LIMIT if everyone <= LOGIN_GLOBAL_LIMIT else LOGIN_FREE_UNDER_ATTACK
        delay = login_delay(failures, free)
        if delay:
            r.set(_wait_key(settings, client), "1", ex=delay)
    except _REDIS_DOWN as exc:
        log.warning("admin login refused: failure not counted (%s)", type(exc).__name__)
        raise LoginUnavailable() from exc
    return delay


def clear_failures(settings: Settings, client: str) -> None:
    """Forget this client's failures after a good login (best effort: the login stands)."""
    try:
        redis_for(settings).delete(_client_key(settings, client), _wait_key(settings, client))
    except _REDIS_DOWN as exc:
        log.warning("admin login failures not cleared (%s)", type(exc).__name__)


# --- API tokens ----------------------------------------------------------------------------


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def create_token(session: Session, name: str) -> str:
    """Make a new API token; only its SHA-256 is stored, so the value is shown once."""
    name = name.strip()
    if not name or len(name) > 100:
        raise ValueError("a token needs a name of 1 to 100 characters")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    session.add(ApiToken(name=name, token_hash=token_hash(token)))
    session.flush()
    return token


def check_token(session: Session, token: str, now: dt.datetime | None = None) -> ApiToken | None:
    """The token's row when the bearer token is known (and note its use), else None."""
    if not token or not token.startswith(TOKEN_PREFIX) or len(token) > 200:
        return None
    row = session.scalar(select(ApiToken).where(ApiToken.token_hash == token_hash(token)))
    if row is not None:
        row.last_used_at = now or utcnow()
    return row


def list_tokens(session: Session) -> list[ApiToken]:
    return list(session.scalars(select(ApiToken).order_by(ApiToken.id)))


def revoke_token(session: Session, token_id: int) -> bool:
    """Forget one token (its hash): the next request with it is refused. False when gone."""
    row = session.get(ApiToken, token_id)
    if row is None:
        return False
    session.delete(row)
    return True
