"""Webhook posts received and answered, and which ledger rows have any provider event (absence)."""

from __future__ import annotations

import datetime as dt
from typing import NamedTuple

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from newsletter.store.models import ProviderEvent, WebhookPost


class PostRow(NamedTuple):
    """One post: when it came, its answer (None: never answered), how far its events reached,
    and the hash of its body (None: not read)."""

    received_at: dt.datetime
    status: int | None
    newest_handed_at: dt.datetime | None
    body_hash: str | None


def post_arrived(session: Session, now: dt.datetime) -> int:
    """A post came in (written before it is read, so a crash leaves it unanswered); its id."""
    post = WebhookPost(received_at=now)
    session.add(post)
    session.flush()
    return post.id


def post_answered(
    session: Session,
    post_id: int,
    status: int,
    newest_handed_at: dt.datetime | None,
    body_hash: str | None = None,
) -> None:
    """The answer our endpoint gave the post, the newest hand-over its events named, and the
    hash of its body (a retry of the same batch has the same one)."""
    session.execute(
        update(WebhookPost)
        .where(WebhookPost.id == post_id)
        .values(status=status, newest_handed_at=newest_handed_at, body_hash=body_hash)
    )


def posts_since(session: Session, since: dt.datetime) -> list[PostRow]:
    """Every post received at or after `since`, oldest first."""
    return [
        PostRow(*row)
        for row in session.execute(
            select(
                WebhookPost.received_at,
                WebhookPost.status,
                WebhookPost.newest_handed_at,
                WebhookPost.body_hash,
            )
            .where(WebhookPost.received_at >= since)
            .order_by(WebhookPost.received_at)
        )
    ]


class LatestPosts(NamedTuple):
    """When the newest post came, and the newest one answered 2xx (None: none kept)."""

    any: dt.datetime | None
    answered: dt.datetime | None


def latest_posts(session: Session) -> LatestPosts:
    """The newest post and the newest answered 2xx (posts are kept about a day)."""
    newest = session.scalar(select(func.max(WebhookPost.received_at)))
    answered = session.scalar(
        select(func.max(WebhookPost.received_at)).where(
            WebhookPost.status >= 200, WebhookPost.status < 300
        )
    )
    return LatestPosts(newest, answered)


def forget_posts_before(session: Session, before: dt.datetime) -> None:
    """Posts older than any hand-over still waiting are no evidence for anything: dropped."""
    session.execute(delete(WebhookPost).where(WebhookPost.received_at < before))


def rows_with_events(session: Session, delivery_ids: list[int]) -> set[int]:
    """Which of these ledger rows any provider event names (1,000 ids per SELECT)."""
    found: set[int] = set()
    for start in range(0, len(delivery_ids), 1000):
        part = delivery_ids[start : start + 1000]
        found.update(
            i
            for i in session.scalars(
                select(ProviderEvent.delivery_id).where(ProviderEvent.delivery_id.in_(part))
            )
            if i is not None
        )
    return found
