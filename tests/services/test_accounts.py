"""Account changes: the last owner kept, a password changed only against the hash that was checked."""

from __future__ import annotations

import pytest

from newsletter.core.config import Settings
from newsletter.services import accounts, auth
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
