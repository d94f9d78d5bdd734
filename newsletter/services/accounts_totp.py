"""Two-factor sign-in: TOTP secrets (stored encrypted), enrolment QR codes and recovery codes.

The secret is sealed by core.sealing (Fernet under a key derived from NEWSLETTER_SECRET_KEY), so a copy of
the database (or a backup) alone can't mint codes. A code is accepted once: the time step it
belongs to is remembered, and an older or equal step is refused. Recovery codes are stored as
SHA-256 digests, one a line; a used one keeps its line with a leading "-" so it can be told
apart from a wrong one ("already used" vs "not right").
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

import pyotp
import segno
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from newsletter.core import sealing
from newsletter.core.config import Settings
from newsletter.store.models import Account

RECOVERY_CODES = 10
STEP_SECONDS = 30
VALID_WINDOW = 1  # a code from the step before or after is still taken (clocks drift)
ENROL_SECONDS = 15 * 60  # an enrolment page's secret is good for this long
USED = "-"

# What checking a code came to.
OK, WRONG, REUSED = "ok", "wrong", "reused"


def seal(settings: Settings, secret: str) -> str:
    return sealing.seal(settings.secret, secret)


def unseal(settings: Settings, sealed: str) -> str | None:
    """The TOTP secret, or None when it was sealed under another secret key."""
    try:
        return sealing.unseal(settings.secret, sealed)
    except sealing.SealError:
        return None


def new_secret() -> str:
    return pyotp.random_base32()


# --- enrolment -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Enrolment:
    """What the enrolment page shows: the secret (also typed by hand), the QR code as inline
    SVG (drawn here by segno: no outside service sees the secret) and the signed form value."""

    secret: str
    uri: str
    qr_svg: str
    signed: str


def _enrol_serializer(settings: Settings) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(settings.secret, salt="newsletter.totp-enrol")


def enrolment(
    settings: Settings, account: Account, issuer: str, secret: str | None = None
) -> Enrolment:
    """A new secret to enrol (or the one a form carried back, after a mistyped code)."""
    secret = secret or new_secret()
    uri = pyotp.TOTP(secret).provisioning_uri(name=account.email, issuer_name=issuer)
    svg = segno.make(uri, error="m").svg_inline(scale=4, border=2, dark="#1f2933", light="#fff")
    signed = _enrol_serializer(settings).dumps({"a": account.id, "s": secret})
    return Enrolment(secret, uri, svg, str(signed))


def enrolment_secret(settings: Settings, account: Account, signed: str) -> str | None:
    """The secret an enrolment form carried, when it is this account's and recent enough."""
    try:
        value = _enrol_serializer(settings).loads(signed, max_age=ENROL_SECONDS)
    except (BadSignature, SignatureExpired):
        return None
    if not isinstance(value, dict) or value.get("a") != account.id:
        return None
    secret = value.get("s")
    return secret if isinstance(secret, str) else None


def turn_on(settings: Settings, account: Account, secret: str, code: str, now: float) -> list[str]:
    """Store the secret once `code` proves the app has it; the new recovery codes (shown
    once). ValueError when the code isn't right."""
    step = _matching_step(secret, code, now, 0)
    if step is None:
        raise ValueError("that code isn't right")
    account.totp_secret = seal(settings, secret)
    account.totp_last_step = step
    return new_recovery_codes(account)


def turn_off(account: Account) -> None:
    account.totp_secret = None
    account.totp_last_step = 0
    account.recovery_codes = ""


# --- checking codes --------------------------------------------------------------------------


def _digits(code: str) -> str:
    return "".join(ch for ch in code if ch.isdigit())


def _matching_step(secret: str, code: str, now: float, after: int) -> int | None:
    """The time step whose code `code` is (within VALID_WINDOW), if later than `after`."""
    digits = _digits(code)
    if len(digits) != 6:
        return None
    totp = pyotp.TOTP(secret)
    current = int(now) // STEP_SECONDS
    for step in range(current - VALID_WINDOW, current + VALID_WINDOW + 1):
        if step > after and hmac.compare_digest(totp.at(step * STEP_SECONDS), digits):
            return step
    return None


def check_code(settings: Settings, account: Account, code: str, now: float | None = None) -> str:
    """OK (and the code's step remembered), REUSED (this code already signed in) or WRONG."""
    sealed = account.totp_secret
    secret = unseal(settings, sealed) if sealed else None
    if secret is None:
        return WRONG
    moment = time.time() if now is None else now
    step = _matching_step(secret, code, moment, account.totp_last_step)
    if step is not None:
        account.totp_last_step = step
        return OK
    return REUSED if _matching_step(secret, code, moment, 0) is not None else WRONG


# --- recovery codes --------------------------------------------------------------------------


def _recovery_digest(code: str) -> str:
    normal = "".join(ch for ch in code.lower() if ch.isalnum())
    return hashlib.sha256(f"newsletter.recovery:{normal}".encode()).hexdigest()


def new_recovery_codes(account: Account) -> list[str]:
    """Ten fresh codes (the old ones stop working); only their digests are stored."""
    codes = [f"{secrets.token_hex(3)}-{secrets.token_hex(3)}" for _ in range(RECOVERY_CODES)]
    account.recovery_codes = "\n".join(_recovery_digest(c) for c in codes)
    return codes


def recovery_codes_left(account: Account) -> int:
    return sum(1 for line in account.recovery_codes.splitlines() if line and line[0] != USED)


def use_recovery_code(account: Account, code: str) -> str:
    """OK (the code is now spent), REUSED (it was spent before) or WRONG."""
    if not code.strip():
        return WRONG
    digest = _recovery_digest(code)
    lines = account.recovery_codes.splitlines()
    for i, line in enumerate(lines):
        if hmac.compare_digest(line, digest):
            lines[i] = USED + line
            account.recovery_codes = "\n".join(lines)
            return OK
        if hmac.compare_digest(line, USED + digest):
            return REUSED
    return WRONG


def check_second_factor(
    settings: Settings, account: Account, code: str, now: float | None = None
) -> str:
    """A six-digit code is checked as TOTP, anything else as a recovery code."""
    if len(_digits(code)) == 6 and len(code.strip()) <= 7:
        return check_code(settings, account, code, now)
    return use_recovery_code(account, code)
