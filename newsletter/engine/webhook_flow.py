"""Whether SendGrid's signed events are flowing back (for `doctor` and the dashboard).

The absence rule (engine.absence) and bounce handling both need the provider's posts. States:
- NOT_SENDGRID: another way of sending; nothing to watch.
- NOT_CONFIGURED: SendGrid without the webhook's signing key: no post is accepted, so handed
  mail waits the 24 h rule and bounces are not heard.
- SILENT: mail was handed at least QUIET_AFTER ago and no post has come since.
- REFUSED: posts came since that hand-over, but none was answered 2xx (a wrong key, a failing
  endpoint): the same effect as silence.
- FLOWING: a post was answered 2xx after every hand-over older than QUIET_AFTER.
- IDLE: no mail handed in the last day that a post should have followed: nothing to judge.

QUIET_AFTER is the settle window's default (15 minutes), not the setting: the absence rule can
only act when the provider reports on later mail within the window, so a post not come after
one default window means the rule is not working. Fixed, so tuning the window does not change
when the dashboard raises the alarm. Only the last day is judged: posts are kept about a day.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy.orm import Session

from newsletter.core.config import Settings
from newsletter.engine.absence import UNKNOWN_RESEND_AFTER
from newsletter.store import ledger, webhook_posts
from newsletter.store.webhook_posts import LatestPosts

QUIET_AFTER = dt.timedelta(minutes=int(Settings.model_fields["settle_window_minutes"].default))
LOOKBACK = UNKNOWN_RESEND_AFTER

NOT_SENDGRID, NOT_CONFIGURED, SILENT, REFUSED, FLOWING, IDLE = (
    "not-sendgrid", "not-configured", "silent", "refused", "flowing", "idle",
)  # fmt: skip
NOT_FLOWING = (NOT_CONFIGURED, SILENT, REFUSED)


@dataclass(frozen=True)
class Flow:
    """The state, the hand-over no answered post has followed (SILENT, REFUSED), and when the
    newest post answered 2xx came (None: none in the last day)."""

    state: str
    handed_at: dt.datetime | None = None
    last_answered: dt.datetime | None = None

    @property
    def flowing(self) -> bool:
        return self.state not in NOT_FLOWING


def judge(latest: LatestPosts, unanswered_handover: dt.datetime | None, now: dt.datetime) -> Flow:
    """The state for a SendGrid installation with a signing key (pure): `unanswered_handover`
    is the first hand-over at least QUIET_AFTER old that no 2xx post has come after."""
    if unanswered_handover is not None:
        refused = latest.any is not None and latest.any > unanswered_handover
        return Flow(REFUSED if refused else SILENT, unanswered_handover, latest.answered)
    if latest.answered is not None and latest.answered >= now - LOOKBACK:
        return Flow(FLOWING, None, latest.answered)
    return Flow(IDLE, None, latest.answered)


def webhook_flow(settings: Settings, session: Session, now: dt.datetime) -> Flow:
    """Is the signed webhook configured and are its posts coming (see the states above)?"""
    if settings.mail_backend != "sendgrid":
        return Flow(NOT_SENDGRID)
    if not settings.sendgrid_webhook_public_key:
        return Flow(NOT_CONFIGURED)
    latest = webhook_posts.latest_posts(session)
    after = now - LOOKBACK
    if latest.answered is not None:
        after = max(after, latest.answered)
    handed = ledger.first_handed_between(session, after, now - QUIET_AFTER)
    return judge(latest, handed, now)
