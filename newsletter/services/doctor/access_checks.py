"""Doctor check of who can sign in to the admin: the stored password and NEWSLETTER_ADMIN_PASSWORD."""

from __future__ import annotations

from pathlib import Path

from newsletter.services.doctor.findings import Context, Finding, error, ok, warning


def admin_password(ctx: Context) -> list[Finding]:
    """Which password signs in. Once `admin set-password` stored one, NEWSLETTER_ADMIN_PASSWORD
    no longer does (services/auth.verify_password): a variable still set is a warning."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import SQLAlchemyError

    from newsletter.services import auth
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
    if stored:
        return [
            ok(
                "admin-password",
                "the admin signs in with the password stored by `admin set-password`",
            )
        ]
    if env_set:
        return [ok("admin-password", "the admin signs in with NEWSLETTER_ADMIN_PASSWORD")]
    return [
        warning(
            "admin-password",
            "no admin password: nobody can sign in to the admin pages; run "
            "`newsletter admin set-password` (or set NEWSLETTER_ADMIN_PASSWORD)",
        )
    ]
