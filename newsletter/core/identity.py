"""Identity rules, pure and written once: addresses, names, time zones, public ids, hashed keys.

Every way a person enters (signup form, admin page, API, CLI, CSV import) goes through these:
- an address is stored as `email_validator` normalises it (domain lower-cased and in Unicode,
  local part kept), without DNS lookups; control characters and over-long input are refused;
- its unique key (`email_key`) is that address lower-cased, and the suppression key of an
  erased address (`suppression_key`) is HMAC-SHA256 under the secret key of the SHA-256
  (`email_hash`, the form stored before) of the same lower-cased text;
- a name is one line (runs of whitespace become one space) of at most NAME_MAX characters;
  a control character in it is refused, never silently removed;
- a time zone is an IANA name;
- an address in a header the practice sends from (sender, reply-to, alerts' admin address) is one
  `local@domain` with no control character, space, bracket, comma, semicolon or quote
  (`header_address`; mail.mime builds every header address with it);
- one line of the practice's own text (a name, the postal address, a heading) holds no control
  character (C0, DEL, C1) and no line or paragraph separator (U+2028, U+2029): `one_line`; a
  multi-line text may hold LF and tab besides (`lines`);
- a public id (what signed links carry) is `secrets.token_urlsafe(18)`: 24 characters from
  A-Z a-z 0-9 - _. Ids made earlier in another format stay valid: lookups are by stored value.
Each rule raises ValueError with a short reason a CSV report or the CLI can show as it is.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import re
import secrets
import unicodedata
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from email_validator import EmailNotValidError, validate_email
from email_validator.rfc_constants import DOT_ATOM_TEXT, LOCAL_PART_MAX_LENGTH

if TYPE_CHECKING:  # config imports these rules: no import of config at run time
    from newsletter.core.config import Settings

EMAIL_MAX = 254
NAME_MAX = 100
ZONE_MAX = 64
PUBLIC_ID_BYTES = 18  # token_urlsafe: 24 characters, 144 random bits
PUBLIC_ID = re.compile(r"[A-Za-z0-9_-]{24}")


def has_control(value: str) -> bool:
    """True when `value` holds a control character (C0, DEL or C1)."""
    if value.isprintable():  # the usual answer, without a look-up per character
        return False
    return any(unicodedata.category(c) == "Cc" for c in value)


# Characters a header address may not hold: they split or quote it (`a@b.org, c@d.org`, `<x>`).
ADDRESS_FORBIDDEN = frozenset("<>,;\"'()[]\\")
SEPARATORS = "\u2028\u2029"  # line and paragraph separators: not Cc, yet they break a line


def _named(c: str) -> str:
    return f"U+{ord(c):04X}"


def _first_control(value: str, allowed: str = "") -> str | None:
    """The first control character or line separator in `value` not in `allowed`, named."""
    if value.isprintable():  # the usual answer, without a look-up per character
        return None
    for c in value:
        if c not in allowed and (c in SEPARATORS or unicodedata.category(c) == "Cc"):
            return _named(c)
    return None


def one_line(value: str, limit: int = 200) -> str:
    """One line of the practice's text, as given; ValueError naming a control character (C0,
    DEL, C1 — tab and line breaks included), U+2028/U+2029, or too many characters."""
    bad = _first_control(value)
    if bad is not None:
        raise ValueError(f"must be a single line of plain text: it has a control character ({bad})")
    if len(value) > limit:
        raise ValueError(f"keep it under {limit:,} characters")
    return value


def lines(value: str, limit: int = 2000) -> str:
    """A multi-line text of the practice's (LF line breaks, tabs allowed); ValueError naming any
    other control character (CR included: the web edge turns CRLF into LF) or U+2028/U+2029."""
    bad = _first_control(value, "\n\t")
    if bad is not None:
        raise ValueError(f"it has a control character ({bad}); only line breaks and tabs may be")
    if len(value) > limit:
        raise ValueError(f"keep it under {limit:,} characters")
    return value


def header_address(raw: str) -> str:
    """The one rule for an address the practice sends from or to in a header: `local@domain`
    (the domain with a dot inside), no control character, no whitespace, none of
    ADDRESS_FORBIDDEN. The address stripped of surrounding spaces; ValueError saying why."""
    value = raw.strip(" ")
    if not value:
        raise ValueError("no email address")
    bad = _first_control(value)
    if bad is not None:
        raise ValueError(f"not an email address: it has a control character ({bad})")
    local, _, domain = value.rpartition("@")
    if (
        any(c.isspace() or c in ADDRESS_FORBIDDEN for c in value)
        or len(value) > EMAIL_MAX
        or not local
        or "@" in local
        or "." not in domain.strip(".")
    ):
        raise ValueError(f"not an email address: {value[:80]!r} (like hello@yourpractice.com)")
    return value


def normalise_email(raw: str | None) -> str:
    """The address as stored: email_validator's normalised form; ValueError otherwise."""
    value = (raw or "").strip()
    if not value:
        raise ValueError("no email address")
    if has_control(value):
        raise ValueError("not a valid email address (control characters)")
    if len(value) > EMAIL_MAX:
        raise ValueError("email address is too long")
    local, _, domain = value.rpartition("@")
    if len(local) <= LOCAL_PART_MAX_LENGTH and DOT_ATOM_TEXT.fullmatch(local):
        plain = _plain_domain(domain)  # None: not a plain ASCII domain, or not valid
        if plain is not None and len(local) + 1 + len(plain) <= EMAIL_MAX:
            return f"{local}@{plain}"
    try:
        result = validate_email(value, check_deliverability=False)
    except EmailNotValidError as exc:
        raise ValueError(f"not a valid email address ({exc})") from None
    return str(result.normalized)


# The common case without email_validator's 47 µs per address (most of an import's CPU): a
# local part of plain ASCII atoms (email_validator's own DOT_ATOM_TEXT, kept as it is, as it
# keeps it) at a domain email_validator accepted before and normalises to ASCII. Anything else
# takes the full path; tests/core/test_identity.py checks both agree.


@functools.lru_cache(maxsize=4096)
def _plain_domain(domain: str) -> str | None:
    try:
        result = validate_email(f"a@{domain}", check_deliverability=False)
    except EmailNotValidError:
        return None
    normalised = str(result.domain)
    return normalised if normalised == result.ascii_domain else None


def email_key(email: str) -> str:
    """The unique, case-insensitive key of an address."""
    return email.strip().lower()


def email_hash(email: str) -> str:
    """The suppression key of an address: SHA-256 (hex) of its lower-cased form."""
    return hashlib.sha256(email_key(email).encode("utf-8")).hexdigest()


def suppression_key(secret: str, email: str) -> str:
    """The suppression key of an address: HMAC-SHA256 (hex) under the secret key of its
    `email_hash`. Keyed, so a copy of the database can't be tested against known addresses;
    taken over the old plain SHA-256, so a row stored that way is re-keyed without the address
    (`rekey`)."""
    return rekey(secret, email_hash(email))


@functools.lru_cache(maxsize=4)
def _suppression_mac(secret: str) -> Any:
    """A prepared HMAC state under the suppressions' own key (copied per address): the C state
    inside `hmac.HMAC` where there is one (a third of the wrapper's copy), else the wrapper."""
    key = hmac.new(secret.encode("utf-8"), b"newsletter.suppression", hashlib.sha256).digest()
    prepared = hmac.new(key, digestmod=hashlib.sha256)
    return getattr(prepared, "_hmac", None) or prepared


def rekey(secret: str, legacy: str) -> str:
    """The keyed suppression key for a plain SHA-256 one (see `suppression_key`)."""
    mac = _suppression_mac(secret).copy()
    mac.update(legacy.encode("ascii"))
    return mac.hexdigest()


def clean_name(raw: str | None) -> str | None:
    """A name on one line, or None when empty; ValueError for control characters or length."""
    value = " ".join((raw or "").split())
    if has_control(value):
        raise ValueError("name contains control characters")
    if len(value) > NAME_MAX:
        raise ValueError(f"name is longer than {NAME_MAX} characters")
    return value or None


_ZONES: list[str] | None = None


def zone_names() -> list[str]:
    """Every IANA zone name, sorted (for the time zone menus)."""
    global _ZONES
    if _ZONES is None:
        _ZONES = sorted(z for z in available_timezones() if "/" in z or z == "UTC")
    return _ZONES


@functools.lru_cache(maxsize=1)
def _zone_set() -> frozenset[str]:
    return frozenset(zone_names())


def check_zone(raw: str | None, default: str) -> str:
    """An IANA zone name; `default` when empty; ValueError when unknown."""
    value = (raw or "").strip()
    if not value:
        return default
    if has_control(value) or len(value) > ZONE_MAX:
        raise ValueError("unknown time zone (use a name like Europe/London)")
    if value not in _zone_set():
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {value[:60]!r} (use a name like Europe/London)"
            ) from None
    return value


def new_public_id() -> str:
    """A fresh random public id for a subscriber (the only format made from now on)."""
    return secrets.token_urlsafe(PUBLIC_ID_BYTES)


def new_public_ids(count: int) -> list[str]:
    """`count` fresh public ids at once (an import's batch), each exactly as `new_public_id`
    makes one: 18 random bytes in URL-safe base64. One read of the random source and one
    encoding for all: 18 bytes encode to 24 characters with no padding, so the encoding of the
    bytes together is the ids one after another."""
    width = PUBLIC_ID_BYTES * 4 // 3
    text = base64.urlsafe_b64encode(secrets.token_bytes(PUBLIC_ID_BYTES * count)).decode("ascii")
    return [text[i : i + width] for i in range(0, width * count, width)]


def fingerprint(secret: str) -> str:
    """A short one-way hash of an API key, to notice when the operator changed it."""
    return hashlib.sha256(secret.encode()).hexdigest()[:16]


def configured_fingerprint(settings: Settings) -> str | None:
    """Fingerprint of the SendGrid key configured now (None if not SendGrid or no key)."""
    key = settings.sendgrid_api_key
    if settings.mail_backend != "sendgrid" or key is None or not key.get_secret_value():
        return None
    return fingerprint(key.get_secret_value())


# The settings every message carries from the practice (what a practice halt is recorded for).
PRACTICE_VALUES = ("from_email", "from_name", "reply_to", "postal_address", "practice_name")


def practice_fingerprint(settings: Settings) -> str:
    """A short hash of the practice's values every message carries (pass the effective
    settings): a halt recorded for one set of them no longer applies once they changed."""
    joined = "\x00".join(str(getattr(settings, name) or "") for name in PRACTICE_VALUES)
    return fingerprint(joined)
