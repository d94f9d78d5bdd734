"""Sealing secrets kept in the database: Fernet under a key derived (HKDF-SHA256) from the server's secret key.

A sealed value reads `sealed:v1:<Fernet token>`. The Fernet key is derived from
NEWSLETTER_SECRET_KEY (or the generated var/secret_key, `Settings.secret`), so the database and its
backups hold only ciphertext: without the secret key the value cannot be read, and changing the
secret key makes earlier sealed values unreadable (connect the provider again).
"""

from __future__ import annotations

import base64

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

PREFIX = "sealed:v1:"
# HKDF's context: a key for this purpose only (the secret key also signs links and cookies).
INFO = b"newsletter: sealed settings in the database, v1"
SALT = b"newsletter.sealing"


class SealError(ValueError):
    """A sealed value that this secret key cannot open (another key, or not a sealed value)."""


def _fernet(secret: str) -> Fernet:
    if not secret:
        raise SealError("no secret key to seal with")
    raw = HKDF(algorithm=hashes.SHA256(), length=32, salt=SALT, info=INFO).derive(secret.encode())
    return Fernet(base64.urlsafe_b64encode(raw))


def seal(secret: str, value: str) -> str:
    """`value` encrypted and authenticated under a key derived from `secret`."""
    return PREFIX + _fernet(secret).encrypt(value.encode()).decode("ascii")


def is_sealed(value: str) -> bool:
    return value.startswith(PREFIX)


def unseal(secret: str, sealed: str) -> str:
    """The value `seal(secret, value)` sealed; SealError for another key or a damaged value."""
    if not is_sealed(sealed):
        raise SealError("not a sealed value")
    try:
        return _fernet(secret).decrypt(sealed.removeprefix(PREFIX).encode("ascii")).decode()
    except (InvalidToken, UnicodeError) as exc:
        raise SealError("sealed with another secret key, or damaged") from exc
