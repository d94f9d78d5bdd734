"""The naive baseline: one Celery task per recipient, the way tutorials build it.

Each task loads its subscriber, renders the whole email with Jinja for that one person (Markdown
included), inlines the CSS with css-inline, builds a `sendgrid.Mail` and makes one API call, then
writes its ledger row and moves the enrollment on. Celery defaults otherwise (prefetch 4, early
ack). Same templates, database, Redis and sink as the real path.
"""

from __future__ import annotations

import datetime as dt
import html
from typing import Any

import css_inline
from celery import Celery, signals
from sendgrid import SendGridAPIClient
from sendgrid.helpers.mail import Header, Mail, To
from sqlalchemy import select

from newsletter.core import tokens
from newsletter.core.config import get_settings
from newsletter.mail.markdown import markdown_html, markdown_text, smart_text
from newsletter.mail.render import Renderer
from newsletter.queue.connection import redis_url
from newsletter.store.db import dispose_all, session_scope
from newsletter.store.models import SENT, Delivery, Enrollment, Part, Series, Subscriber


def queue_name() -> str:
    return f"{get_settings().redis_prefix}naive"


def make_app() -> Celery:
    settings = get_settings()
    app = Celery("naive")
    app.conf.update(
        broker_url=redis_url(settings),
        task_ignore_result=True,
        broker_transport_options={"global_keyprefix": f"{settings.redis_prefix}naive:"},
        task_default_queue=queue_name(),
        worker_hijack_root_logger=False,
        broker_connection_retry_on_startup=True,
    )
    return app


app = make_app()
_renderer: Renderer | None = None


def renderer() -> Renderer:
    global _renderer
    if _renderer is None:
        _renderer = Renderer(get_settings())
    return _renderer


@app.task(name="naive.send_one")
def send_one(enrollment_id: int, now: str) -> dict[str, int]:
    settings = get_settings()
    moment = dt.datetime.fromisoformat(now)
    r = renderer()
    with session_scope(settings.database_url) as session:
        enr = session.get(Enrollment, enrollment_id)
        assert enr is not None
        sub = session.get(Subscriber, enr.subscriber_id)
        series = session.get(Series, enr.series_id)
        part = session.scalar(
            select(Part).where(Part.series_id == enr.series_id, Part.number == enr.next_part)
        )
        assert sub is not None and series is not None and part is not None
        unsubscribe = tokens.link(
            settings.public_url, settings.secret, "unsubscribe", sub.public_id
        )
        preferences = tokens.link(
            settings.public_url, settings.secret, "preferences", sub.public_id
        )
        greeting = f"Hi {sub.name}," if sub.name else "Hello,"
        context: dict[str, Any] = r._base(part.title, part.summary, r.archive_url(series.slug, 1))
        context.update(
            kind=getattr(series, "kind", "series"),
            greeting=greeting,
            greeting_html=html.escape(greeting),
            unsubscribe_url=unsubscribe,
            preferences_url=preferences,
            series_title=series.title,
            series_slug=series.slug,
            part_number=part.number,
            part_count=4,
            part_title=part.title,
            part_title_html=smart_text(part.title),
            summary=part.summary,
            summary_html=smart_text(part.summary),
            body_html=markdown_html(part.body_md),
            body_text=markdown_text(part.body_md),
        )
        html_out = r.env.get_template("email/article.html").render(context)
        html_out = css_inline.inline(html_out)
        text_out = r.env.get_template("email/article.txt").render(context)
        mail = Mail(
            from_email=(settings.from_email, settings.from_name),
            to_emails=To(sub.email, sub.name),
            subject=part.title,
            plain_text_content=text_out,
            html_content=html_out,
        )
        mail.header = Header("List-Unsubscribe", f"<{unsubscribe}>")
        assert settings.sendgrid_api_key is not None
        client = SendGridAPIClient(
            api_key=settings.sendgrid_api_key.get_secret_value(), host=settings.sendgrid_host
        )
        response = client.send(mail)
        session.add(
            Delivery(
                subscriber_id=sub.id,
                series_id=series.id,
                part_number=part.number,
                status=SENT,
                scheduled_for=enr.next_due_at or moment,
                sent_at=moment,
                provider_message_id=response.headers.get("X-Message-Id"),
                attempts=1,
                created_at=moment,
                updated_at=moment,
            )
        )
        enr.next_part += 1
        enr.next_due_at = moment + dt.timedelta(days=7)
    return {"sent": 1}


@signals.worker_process_init.connect
def _fresh_connections(**_: Any) -> None:
    dispose_all()  # never share pooled DB connections across fork
