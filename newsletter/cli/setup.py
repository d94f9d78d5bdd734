"""`newsletter init`: create or upgrade the database and sync series from schedules/."""

from __future__ import annotations

from typing import Any

from newsletter.cli.common import console, fail, print_problems, settings

# Libraries load inside each command, not here, so `newsletter --help` starts fast.

WEBHOOK_KEY_HINT = (
    "hint: the SendGrid event webhook refuses unsigned posts: set "
    "NEWSLETTER_SENDGRID_WEBHOOK_PUBLIC_KEY to the verification key SendGrid shows under "
    "Settings > Mail Settings > Event Webhook > Signed Event Webhook"
)


def init() -> None:
    """Create or upgrade the database and sync series from schedules/."""
    from sqlalchemy import select
    from sqlalchemy.engine import make_url

    from newsletter.content import series as content
    from newsletter.mail.render import Renderer
    from newsletter.services import people
    from newsletter.store import db
    from newsletter.store import series as series_store
    from newsletter.store.models import Series

    s = settings()
    db.upgrade(s.database_url)
    console.print(
        f"database ready: {make_url(s.database_url).render_as_string(hide_password=True)}"
    )
    with db.session_scope(s.database_url) as session:  # erased addresses stored before 0004
        rekeyed = people.rekey_suppressions(session, s.secret)
    if rekeyed:
        console.print(f"erased addresses re-keyed with the secret key: {rekeyed}")
    if s.mail_backend == "sendgrid" and not s.sendgrid_webhook_public_key:
        console.print(WEBHOOK_KEY_HINT, soft_wrap=True)
    # (content) validate and sync schedules/ into the database; refuse on any problem.
    problems = content.validate(s.schedules_dir, check=Renderer(s).check)
    if problems:
        print_problems(problems)
        raise fail(f"{len(problems)} problem(s) in {s.schedules_dir}; nothing synced")
    specs = content.load_all(s.schedules_dir)
    with db.session_scope(s.database_url) as session:
        fresh = session.scalar(select(Series.id).limit(1)) is None  # no series before this init
        try:
            report = series_store.sync(session, specs)
        except content.ContentError as exc:
            print_problems(exc.errors)
            raise fail("series not synced") from None
        console.print(f"series synced from {s.schedules_dir}: {report.summary()}")
        # (engine) on a fresh database, queue the shipped series (Myths first, then Co-Created,
        # by their `order`) so a fresh install sends them; later folders stay drafts until
        # `series queue`. Redis needs nothing: no one is enrolled yet, and every worker and
        # beat start rebuilds the queue state from the database when Redis has none.
        if fresh:
            import datetime as dt

            from newsletter.engine import series_queue

            session.flush()
            for row in session.scalars(select(Series).order_by(Series.order, Series.id)):
                series_queue.queue_series(session, row.slug, None, dt.datetime.now(dt.UTC))
                console.print(f"queued {row.slug} (order {row.order})")
        # (engine) parts appended to a series reach those who finished it, at their next slot.
        reopened: list[int] = []
        for slug in report.appended:
            found = series_store.by_slug(session, slug)
            if found is not None:
                reopened += schedule_parts_appended(session, found.id)
        if reopened:
            from newsletter.queue.dueset import RedisQueue

            session.commit()
            RedisQueue(s).sync_enrollments(session, reopened)


def schedule_parts_appended(session: Any, series_id: int) -> list[int]:
    import datetime as dt

    from newsletter.engine import series_queue

    return series_queue.parts_appended(session, series_id, dt.datetime.now(dt.UTC))
