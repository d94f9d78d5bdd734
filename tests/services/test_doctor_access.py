"""Doctor's admin-password check: who signs in, the owner's account and the people she invited
counted with the server's admin."""

from __future__ import annotations

from pydantic import SecretStr

from newsletter.core.config import Settings
from newsletter.services import accounts, auth, doctor
from newsletter.store.db import session_scope


def finding(settings: Settings) -> doctor.Finding:
    (found,) = doctor.run(doctor.Context(settings), ["admin-password"]).findings
    return found


def account(settings: Settings, email: str, role: str, password: str | None) -> None:
    with session_scope(settings.database_url) as session:
        hashed = auth.hash_password(password) if password else None
        accounts.create(session, email, "Maya", role, hashed)


def test_nobody_to_sign_in_is_a_warning_saying_how_to_make_the_owner(settings: Settings) -> None:
    nobody = settings.model_copy(update={"admin_password": None})
    account(nobody, "invited@harbour.example", accounts.OWNER, None)  # not accepted yet
    found = finding(nobody)
    assert found.level == doctor.WARNING
    assert "nobody can sign in" in found.message and "admin setup-link" in found.message


def test_the_owners_account_signs_in_without_an_admin_password(settings: Settings) -> None:
    """The first run in the browser made the owner: no server password is needed, and the
    check no longer says nobody can sign in."""
    no_password = settings.model_copy(update={"admin_password": None})
    account(no_password, "maya@harbour.example", accounts.OWNER, "the owner's long password")
    account(no_password, "sam@harbour.example", accounts.ASSISTANT, "the assistant's password")
    account(no_password, "lee@harbour.example", accounts.ASSISTANT, "another long password")
    account(no_password, "new@harbour.example", accounts.ASSISTANT, None)  # invited only
    found = finding(no_password)
    assert found.level == doctor.OK
    assert found.message == "signs in: 1 owner account; 2 assistant accounts"
    with_env = settings.model_copy(update={"admin_password": SecretStr("a long env password")})
    assert finding(with_env).message == (
        "signs in: 1 owner account; 2 assistant accounts; "
        "the server's admin with NEWSLETTER_ADMIN_PASSWORD"
    )
