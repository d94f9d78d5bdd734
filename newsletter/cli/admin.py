"""`newsletter admin ...`: the admin password and API tokens."""

from __future__ import annotations

import typer

from newsletter.cli.common import GROUP, console, fail, settings

# Libraries load inside each command, not here, so `newsletter --help` starts fast.

app = typer.Typer(**GROUP, help="Admin login and API tokens.")


@app.command("set-password")
def admin_set_password(
    password: str = typer.Option(
        ...,
        prompt=True,
        confirmation_prompt=True,
        hide_input=True,
        envvar="NEWSLETTER_NEW_ADMIN_PASSWORD",
        help="Asked for when not given.",
    ),
) -> None:
    """Set the admin password (stored as an Argon2 hash; replaces the previous one and, from now
    on, NEWSLETTER_ADMIN_PASSWORD)."""
    from newsletter.services import auth
    from newsletter.store.db import session_scope

    s = settings()
    try:
        with session_scope(s.database_url) as session:
            auth.set_password(session, password)
    except ValueError as exc:
        raise fail(str(exc)) from None
    console.print("admin password set")
    if s.admin_password is not None:
        console.print(
            "NEWSLETTER_ADMIN_PASSWORD no longer signs in (the stored password replaces it): "
            "remove it from the environment"
        )


@app.command("create-token")
def admin_create_token(
    name: str, as_json: bool = typer.Option(False, "--json", help="Print {name, token} as JSON.")
) -> None:
    """Create an API token; it is printed once and only its hash is kept."""
    import json

    from newsletter.services import auth
    from newsletter.store.db import session_scope

    s = settings()
    try:
        with session_scope(s.database_url) as session:
            token = auth.create_token(session, name)
    except ValueError as exc:
        raise fail(str(exc)) from None
    if as_json:
        print(json.dumps({"name": name, "token": token}))
        return
    console.print(f"API token [bold]{name}[/bold] (shown once; keep it safe):", highlight=False)
    print(token)
