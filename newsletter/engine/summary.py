"""The tick summary: what a tick, or one chunk of it, did (the counts every entry point prints)."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass
class TickSummary:
    """What a tick (or one chunk) did; `tick --json`, the tasks and the logs print the same.

    due      enrollments claimed as due
    sent     accepted by the provider
    retry    not sent yet and attempted again later: the provider pushed back (429, 5xx,
             refused connection), sending is halted, the article failed to render, or the
             outcome is unknown (handed over, no answer) and reconcile settles it
    skipped  nothing to send after all (unsubscribed, paused, suppressed, already sent, in
             flight elsewhere, Redis was stale)
    failed   permanent for that address (the provider refused it); the reader moves on
    """

    due: int = 0
    sent: int = 0
    retry: int = 0
    skipped: int = 0
    failed: int = 0

    def add(self, other: TickSummary) -> None:
        self.due += other.due
        self.sent += other.sent
        self.retry += other.retry
        self.skipped += other.skipped
        self.failed += other.failed

    def as_dict(self) -> dict[str, int]:
        return asdict(self)
