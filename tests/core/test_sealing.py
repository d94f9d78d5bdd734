"""Sealed values: readable with the secret key that sealed them, and with no other."""

from __future__ import annotations

import pytest

from newsletter.core import sealing

SECRET = "test-secret-key-not-for-production"
KEY = "SG.abcdefghijklmnop.qrstuvwxyz0123456789"


def test_a_sealed_value_opens_with_its_secret_and_hides_the_value() -> None:
    sealed = sealing.seal(SECRET, KEY)
    assert sealed.startswith(sealing.PREFIX)
    assert KEY not in sealed and "abcdefghijklmnop" not in sealed
    assert sealing.unseal(SECRET, sealed) == KEY
    assert sealing.seal(SECRET, KEY) != sealed  # a fresh IV each time


def test_another_secret_key_cannot_open_it() -> None:
    sealed = sealing.seal(SECRET, KEY)
    with pytest.raises(sealing.SealError):
        sealing.unseal("another-secret-key", sealed)


@pytest.mark.parametrize("damaged", ["", KEY, sealing.PREFIX + "AAAA", sealing.PREFIX + "é"])
def test_a_value_that_is_not_sealed_or_is_damaged_is_refused(damaged: str) -> None:
    with pytest.raises(sealing.SealError):
        sealing.unseal(SECRET, damaged)


def test_an_empty_secret_refuses_to_seal() -> None:
    with pytest.raises(sealing.SealError):
        sealing.seal("", KEY)
