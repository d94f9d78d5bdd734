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


@app.command("setup-link")
def admin_setup_link() -> None:
    """Print a new one-time setup link for the first owner (24 hours; the previous one stops
    working). Once the owner exists there is none: sign in, or reset the password by email."""
    from newsletter.services import accounts_links
    from newsletter.store.db import session_scope

    s = settings()
    with session_scope(s.database_url) as session:
        url = accounts_links.new_setup_link(s, session)
    if url is None:
        raise fail("the owner's account exists already: sign in at /admin/login")
    print_setup_link(url)


def print_setup_link(url: str) -> None:
    """The setup link, said the same way by `init` and `admin setup-link`."""
    console.print(
        "Open this link in your browser to create the owner's account (works once, for 24 hours):",
        highlight=False,
    )
    print(url)


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
