"""store.webhook_posts: each post noted before it is read, its answer and body hash after."""

from __future__ import annotations

import datetime as dt

from engine_support import utc

from newsletter.core.config import Settings
from newsletter.store import webhook_posts
from newsletter.store.db import session_scope
from newsletter.store.webhook_posts import PostRow

T0 = utc(2027, 3, 1, 9)


def test_a_post_keeps_its_answer_reach_and_body_hash(settings: Settings) -> None:
    with session_scope(settings.database_url) as session:
        first = webhook_posts.post_arrived(session, T0)
        retry = webhook_posts.post_arrived(session, T0 + dt.timedelta(minutes=5))
        unanswered = webhook_posts.post_arrived(session, T0 + dt.timedelta(minutes=6))
        webhook_posts.post_answered(session, first, 503, None, "a" * 64)
        webhook_posts.post_answered(session, retry, 200, T0, "a" * 64)
    with session_scope(settings.database_url) as session:
        rows = webhook_posts.posts_since(session, T0)
    assert rows == [
        PostRow(T0, 503, None, "a" * 64),
        PostRow(T0 + dt.timedelta(minutes=5), 200, T0, "a" * 64),
        PostRow(T0 + dt.timedelta(minutes=6), None, None, None),
    ]
    assert unanswered


def test_posts_before_a_moment_are_forgotten(settings: Settings) -> None:
    with session_scope(settings.database_url) as session:
        webhook_posts.post_arrived(session, T0)
        webhook_posts.post_arrived(session, T0 + dt.timedelta(hours=1))
        webhook_posts.forget_posts_before(session, T0 + dt.timedelta(minutes=1))
    with session_scope(settings.database_url) as session:
        assert [p.received_at for p in webhook_posts.posts_since(session, T0)] == [
            T0 + dt.timedelta(hours=1)
        ]


def test_latest_posts_names_the_newest_and_the_newest_answered_2xx(settings: Settings) -> None:
    with session_scope(settings.database_url) as session:
        assert webhook_posts.latest_posts(session) == (None, None)
        ok = webhook_posts.post_arrived(session, T0)
        refused = webhook_posts.post_arrived(session, T0 + dt.timedelta(minutes=1))
        webhook_posts.post_arrived(session, T0 + dt.timedelta(minutes=2))  # never answered
        webhook_posts.post_answered(session, ok, 200, None)
        webhook_posts.post_answered(session, refused, 403, None)
    with session_scope(settings.database_url) as session:
        latest = webhook_posts.latest_posts(session)
    assert latest == (T0 + dt.timedelta(minutes=2), T0)
