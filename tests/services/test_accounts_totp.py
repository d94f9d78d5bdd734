"""Two-factor sign-in: the secret sealed under the secret key, codes once each, recovery codes."""

from __future__ import annotations

import pyotp
import pytest
from pydantic import SecretStr

from newsletter.core.config import Settings
from newsletter.services import accounts_totp as totp
from newsletter.store.models import Account

NOW = 1_800_000_000.0  # a moment of our own: every check here passes its time in


def account() -> Account:
    return Account(
        id=1,
        email="maya@harbour.example",
        name="Maya",
        role="owner",
        totp_last_step=0,
        recovery_codes="",
        generation=0,
    )


def test_the_secret_is_sealed_and_only_the_secret_key_opens_it(settings: Settings) -> None:
    secret = totp.new_secret()
    sealed = totp.seal(settings, secret)
    assert secret not in sealed
    assert totp.unseal(settings, sealed) == secret
    other = settings.model_copy(
        update={"secret_key": SecretStr("another-secret-key-for-this-test")}
    )
    assert totp.unseal(other, sealed) is None


def enrolled(settings: Settings) -> tuple[Account, str, list[str]]:
    person, secret = account(), totp.new_secret()
    codes = totp.turn_on(settings, person, secret, pyotp.TOTP(secret).at(NOW), NOW)
    return person, secret, codes


def test_turning_on_needs_a_right_code(settings: Settings) -> None:
    person, secret = account(), totp.new_secret()
    with pytest.raises(ValueError):
        totp.turn_on(
            settings,
            person,
            secret,
            "000000" if pyotp.TOTP(secret).at(NOW) != "000000" else "111111",
            NOW,
        )
    assert person.totp_secret is None
    person, _, codes = enrolled(settings)
    assert len(codes) == 10 and len(set(codes)) == 10
    assert totp.recovery_codes_left(person) == 10
    assert not any(code in person.recovery_codes for code in codes)  # digests only


def test_a_code_signs_in_once(settings: Settings) -> None:
    person, secret, _ = enrolled(settings)
    later = NOW + 30
    code = pyotp.TOTP(secret).at(later)
    assert totp.check_code(settings, person, code, later) == totp.OK
    assert totp.check_code(settings, person, code, later) == totp.REUSED
    wrong = "123456" if code != "123456" else "654321"
    assert totp.check_code(settings, person, wrong, later + 30) == totp.WRONG
    assert (
        totp.check_code(settings, person, pyotp.TOTP(secret).at(later + 30), later + 30) == totp.OK
    )


def test_a_code_from_long_ago_is_wrong(settings: Settings) -> None:
    person, secret, _ = enrolled(settings)
    old = pyotp.TOTP(secret).at(NOW + 30)
    assert totp.check_code(settings, person, old, NOW + 30 * 10) == totp.WRONG


def test_a_recovery_code_works_once(settings: Settings) -> None:
    person, _, codes = enrolled(settings)
    assert totp.check_second_factor(settings, person, codes[0].upper(), NOW) == totp.OK
    assert totp.check_second_factor(settings, person, codes[0], NOW) == totp.REUSED
    assert totp.check_second_factor(settings, person, "abcdef-abcdef", NOW) == totp.WRONG
    assert totp.recovery_codes_left(person) == 9
    fresh = totp.new_recovery_codes(person)
    assert totp.check_second_factor(settings, person, codes[1], NOW) == totp.WRONG
    assert totp.check_second_factor(settings, person, fresh[1], NOW) == totp.OK


def test_an_enrolment_form_is_this_accounts_only(settings: Settings) -> None:
    person = account()
    shown = totp.enrolment(settings, person, "Harbour Practice")
    assert shown.qr_svg.startswith("<svg") and "otpauth://" not in shown.qr_svg
    assert totp.enrolment_secret(settings, person, shown.signed) == shown.secret
    other = account()
    other.id = 2
    assert totp.enrolment_secret(settings, other, shown.signed) is None
    assert totp.enrolment_secret(settings, person, shown.signed + "x") is None
