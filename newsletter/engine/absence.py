"""Evidence of absence: when a handed chunk with no provider event is sent again (pure rule).

A handed row (outcome unknown) is settled by evidence. Presence: a provider event names it.
Absence: the provider reports on mail we handed over after this chunk (or in the same moment: an
inline tick stamps all its chunks with its own time), has said nothing about
any row of the chunk, and our webhook endpoint answered every post since the chunk's hand-over
with 2xx (a refused or failed post will be posted again later, so the missing events may be in
it; it stops blocking once a post with the same body -- the provider retries the same batch --
was answered 2xx) -- then, once the settle window has passed, the provider never took the chunk and it is sent
again at once. Without that evidence (no webhook, a failed post, no report on later mail) the
chunk waits for UNKNOWN_RESEND_AFTER, as before. Residual risk: the provider accepted the chunk
but its events come later than the window while every post was answered 2xx (or reached us
not at all): those readers get a second copy, and the row says why.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from newsletter.store.ledger import RESENT_NOTE

UNKNOWN_RESEND_AFTER = dt.timedelta(hours=24)
# Starts with RESENT_NOTE: the ledger keeps notes that start so after the resend succeeds.
ABSENT_NOTE = (
    f"{RESENT_NOTE}: the provider never took it (no event for it while its events for later "
    "mail arrived and every webhook post was answered)"
)
WAITING_FOR_EVENTS = "waiting for the provider's events"
WAITING_FOR_WINDOW = "the provider reports on later mail; sent again if nothing comes"
BLOCKED_BY_POST = "a webhook post was not answered 2xx; the provider will post it again"


@dataclass(frozen=True)
class Post:
    """A webhook post: when it came, whether we answered 2xx, the newest hand-over it named,
    the hash of its body (None: not read, so no retry can be matched to it)."""

    received_at: dt.datetime
    ok: bool
    newest_handed_at: dt.datetime | None
    body_hash: str | None = None


def _still_blocking(posts: Sequence[Post]) -> list[Post]:
    """The failed posts whose batch no post with the same body has since been answered 2xx for
    (a 2xx answer to the same body stored the same events)."""
    answered = {p.body_hash for p in posts if p.ok and p.body_hash is not None}
    return [p for p in posts if not p.ok and (p.body_hash is None or p.body_hash not in answered)]


@dataclass(frozen=True)
class Verdict:
    """What happens to a handed chunk: sent again at `resend_at` (now or later), and why."""

    resend_at: dt.datetime
    absent: bool  # the resend time comes from the absence rule, not the 24 h fallback
    reason: str

    def due(self, now: dt.datetime) -> bool:
        return self.resend_at <= now


def judge(
    handed_at: dt.datetime,
    has_event: bool,
    posts: Sequence[Post],
    window: dt.timedelta,
) -> Verdict:
    """The rule for one chunk handed at `handed_at` (`posts`: those received since then).

    A chunk with an event for any row was taken (its other rows wait for theirs, or 24 h)."""
    fallback = Verdict(handed_at + UNKNOWN_RESEND_AFTER, False, WAITING_FOR_EVENTS)
    if has_event:
        return fallback
    since = [p for p in posts if p.received_at >= handed_at]
    if _still_blocking(since):
        return Verdict(fallback.resend_at, False, BLOCKED_BY_POST)
    later = any(p.newest_handed_at is not None and p.newest_handed_at >= handed_at for p in since)
    if not later:
        return fallback
    return Verdict(handed_at + window, True, WAITING_FOR_WINDOW)
