"""Account changes: the last owner kept, a password changed only against the hash that was checked,
a sign-in code spent once."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pyotp
import pytest

from newsletter.core.config import Settings
from newsletter.services import accounts, accounts_totp, auth
from newsletter.store.db import session_scope

PASSWORD = "owner's long password"


def an_account(settings: Settings, email: str, password: str | None, role: str) -> int:
    with session_scope(settings.database_url) as session:
        hashed = auth.hash_password(password) if password else None
        return accounts.create(session, email, "Maya", role, hashed).id


def test_the_last_owner_counts_only_owners_who_can_sign_in(settings: Settings) -> None:
    owner = an_account(settings, "maya@harbour.example", PASSWORD, accounts.OWNER)
    an_account(settings, "invited@harbour.example", None, accounts.OWNER)  # not yet accepted
    with session_scope(settings.database_url) as session:
        with pytest.raises(accounts.LastOwner):
            accounts.change_role(session, owner, accounts.ASSISTANT)
        with pytest.raises(accounts.LastOwner):
            accounts.remove(session, accounts.OPERATOR, owner)


def test_a_second_owner_lets_the_first_become_an_assistant(settings: Settings) -> None:
    owner = an_account(settings, "maya@harbour.example", PASSWORD, accounts.OWNER)
    helper = an_account(settings, "sam@harbour.example", PASSWORD, accounts.ASSISTANT)
    with session_scope(settings.database_url) as session:
        assert accounts.change_role(session, helper, accounts.OWNER).is_owner
        assert not accounts.change_role(session, owner, accounts.ASSISTANT).is_owner
        with pytest.raises(accounts.LastOwner):
            accounts.change_role(session, helper, accounts.ASSISTANT)


def test_a_password_changed_meanwhile_is_not_overwritten(settings: Settings) -> None:
    """The new hash is saved only over the hash the current password was checked against."""
    owner = an_account(settings, "maya@harbour.example", PASSWORD, accounts.OWNER)
    with pytest.raises(accounts.WrongPassword, match="changed meanwhile"):
        accounts._save_new_password(settings, owner, "a hash checked earlier", "new hash")
    with session_scope(settings.database_url) as session:
        account = accounts.store.by_id(session, owner)
        assert account is not None and auth.hash_matches(account.password_hash or "", PASSWORD)


NOW = 1_800_000_000.0


def with_two_factor(settings: Settings) -> tuple[int, int, list[str], str]:
    """An owner with two-factor sign-in on: (id, generation, recovery codes, TOTP secret)."""
    owner = an_account(settings, "maya@harbour.example", PASSWORD, accounts.OWNER)
    secret = accounts_totp.new_secret()
    with session_scope(settings.database_url) as session:
        account = accounts.store.by_id(session, owner)
        assert account is not None
        earlier = NOW - 60  # turned on a minute before: NOW's code is still unused
        codes = accounts_totp.turn_on(
            settings, account, secret, pyotp.TOTP(secret).at(earlier), earlier
        )
        return owner, account.generation, codes, secret


def test_a_code_is_spent_once_however_close_two_sign_ins_come(settings: Settings) -> None:
    """Both sign-ins read the account before either saved: the second save finds the row
    changed and is refused (it reads as REUSED), for a recovery code and a TOTP code alike."""
    owner, generation, codes, secret = with_two_factor(settings)
    for code in (codes[0], pyotp.TOTP(secret).at(NOW)):
        with session_scope(settings.database_url) as session:
            account = accounts.store.by_id(session, owner)
            assert account is not None
            read = accounts.store.SecondFactor.of(account)  # the slower sign-in's read
        first = accounts.check_code(settings, owner, generation, code, NOW)
        assert first == (accounts_totp.OK, first[1])
        with session_scope(settings.database_url) as session:
            account = accounts.store.by_id(session, owner)
            assert account is not None
            spent = accounts_totp.check_second_factor(settings, account, code, NOW)
            session.expire(account)
            assert spent == accounts_totp.REUSED  # what it sees now; with its old read:
            late = accounts.store.SecondFactor(read.recovery_codes + "x", read.totp_last_step + 1)
            assert not accounts.store.spend_second_factor(session, owner, read, late)
        with session_scope(settings.database_url) as session:
            account = accounts.store.by_id(session, owner)
            assert account is not None and "x" not in account.recovery_codes
        assert accounts.check_code(settings, owner, generation, code, NOW)[0] == (
            accounts_totp.REUSED
        )
    assert accounts.check_code(settings, owner, generation, codes[1], NOW)[0] == accounts_totp.OK


def test_two_sign_ins_with_one_recovery_code_at_once_let_one_in(settings: Settings) -> None:
    owner, generation, codes, _ = with_two_factor(settings)
    start = threading.Barrier(2)

    def sign_in() -> str:
        start.wait()
        return accounts.check_code(settings, owner, generation, codes[3], NOW)[0]

    with ThreadPoolExecutor(2) as pool:
        results = sorted(pool.map(lambda _: sign_in(), range(2)))
    assert results == sorted([accounts_totp.OK, accounts_totp.REUSED])
    with session_scope(settings.database_url) as session:
        account = accounts.store.by_id(session, owner)
        assert account is not None and accounts_totp.recovery_codes_left(account) == 9
