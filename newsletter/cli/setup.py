"""`newsletter init`: create or upgrade the database and sync series from schedules/."""

from __future__ import annotations

from typing import TYPE_CHECKING

from newsletter.cli.common import console, fail, print_problems, settings

if TYPE_CHECKING:
    from newsletter.core.config import Settings

# Libraries load inside each command, not here, so `newsletter --help` starts fast.

WEBHOOK_KEY_HINT = (
    "hint: the SendGrid event webhook refuses unsigned posts: set "
    "NEWSLETTER_SENDGRID_WEBHOOK_PUBLIC_KEY to the verification key SendGrid shows under "
    "Settings > Mail Settings > Event Webhook > Signed Event Webhook"
)


def init() -> None:
    """Create or upgrade the database and sync series from schedules/."""
    import datetime as dt

    from newsletter.content import series as content
    from newsletter.services import people, series_admin
    from newsletter.store import db

    s = settings()
    db.upgrade(s.database_url)
    console.print(f"database ready: {db.shown_url(s.database_url)}")
    with db.session_scope(s.database_url) as session:  # erased addresses stored before 0004
        rekeyed = people.rekey_suppressions(session, s.secret)
    if rekeyed:
        console.print(f"erased addresses re-keyed with the secret key: {rekeyed}")
    if s.mail_backend == "sendgrid" and not s.sendgrid_webhook_public_key:
        console.print(WEBHOOK_KEY_HINT, soft_wrap=True)
    try:
        installed = series_admin.install_series(s, dt.datetime.now(dt.UTC))
    except content.ContentError as exc:
        print_problems(exc.errors)
        raise fail(f"{len(exc.errors)} problem(s) in {s.schedules_dir}; nothing synced") from None
    console.print(f"series synced from {s.schedules_dir}: {installed.report.summary()}")
    for slug, order in installed.queued:
        console.print(f"queued {slug} (order {order})")
    _setup_link(s)


def _setup_link(s: Settings) -> None:
    """Until the owner's account exists, each `init` prints a fresh one-time setup link."""
    from newsletter.cli.admin import print_setup_link
    from newsletter.services import accounts_links
    from newsletter.store import db

    with db.session_scope(s.database_url) as session:
        url = accounts_links.new_setup_link(s, session)
    if url is not None:
        print_setup_link(url)
