"""Doctor check of who can sign in to the admin: the accounts, the stored password and
NEWSLETTER_ADMIN_PASSWORD."""

from __future__ import annotations

from pathlib import Path

from newsletter.services.doctor.findings import Context, Finding, error, ok, warning


def admin_password(ctx: Context) -> list[Finding]:
    """Who signs in: the accounts that have a password (the owner made on the first run, the
    people she invited), and the server's admin. Once `admin set-password` stored a password,
    NEWSLETTER_ADMIN_PASSWORD no longer signs in (services/auth.verify_password): a variable
    still set is a warning. Nobody at all is a warning too."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import SQLAlchemyError

    from newsletter.services import auth
    from newsletter.store import accounts
    from newsletter.store.db import session_scope

    url = ctx.settings.database_url
    env_set = ctx.settings.admin_password is not None
    if (
        make_url(url).get_backend_name() == "sqlite"
        and not Path(make_url(url).database or "").is_file()
    ):  # opening would create an empty file; the migrations finding says what to do
        return [error("admin-password", "not checked: no database (see the migrations finding)")]
    try:
        with session_scope(url) as session:
            stored = auth.stored_hash(session) is not None
            people = accounts.able_to_sign_in(session)
    except SQLAlchemyError as exc:
        return [
            error(
                "admin-password", f"not checked: the database did not answer ({type(exc).__name__})"
            )
        ]
    if stored and env_set:
        return [
            warning(
                "admin-password",
                "NEWSLETTER_ADMIN_PASSWORD is set but no longer signs in: the password stored "
                "with `newsletter admin set-password` replaced it; remove the variable",
            )
        ]
    who = [
        f"{n} {role} account{'s' if n != 1 else ''}"
        for role, n in sorted(people.items(), key=lambda item: item[0] != accounts.OWNER)
    ]
    if stored:
        who.append("the server's admin with the password stored by `admin set-password`")
    elif env_set:
        who.append("the server's admin with NEWSLETTER_ADMIN_PASSWORD")
    if who:
        return [ok("admin-password", "signs in: " + "; ".join(who))]
    return [
        warning(
            "admin-password",
            "nobody can sign in to the admin pages: no account has a password yet and there is "
            "no admin password; `newsletter admin setup-link` prints the link that makes the "
            "owner's account (or run `newsletter admin set-password`)",
        )
    ]
