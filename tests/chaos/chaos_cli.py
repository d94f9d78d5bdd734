"""The real CLI (`newsletter.cli:run`, what `main` runs) with one fault armed by environment variables.

Hooks sit on public seams only, so they survive refactors inside dispatch:
- `newsletter.engine.plan.plan` as the tick loop looks it up (its return: the ledger claim is
  committed),
- `newsletter.delivery.get_backend(...).send` (entry: hand-over committed; return: provider done),
- SQLAlchemy's `before_commit` on every Session (the outcome commit after the provider call).

CHAOS_KILL_AT   after_plan | after_handover | after_accept | before_outcome_commit: SIGKILL there
CHAOS_KILL_NTH  at the n-th time that point is reached (default 1), counted over the command's
                processes (an inline tick's forked senders share the count)
CHAOS_MARK      a file written (naming the point) just before the kill
CHAOS_BARRIER   a directory: write `ready-<pid>`, then wait until `go` exists (racing starts)
CHAOS_HOLD_DIR  after the first plan with work: write `holding-<pid>`, wait until `release` exists
CHAOS_POISON    an address whose send kills the process (a poison row): the recipients before
                it in its batch are sent, then SIGKILL, every time it is sent
CHAOS_SENDGRID_TIMEOUT  seconds for the SendGrid client (the product has no setting for it: this
                patches newsletter.delivery.sendgrid.TIMEOUT_SECONDS when that name exists)

A kill point that is never reached exits 97 with a message: a refactor moved the seam, and the
test must fail loudly rather than pass without its fault.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

KILL_AT = os.environ.get("CHAOS_KILL_AT", "")
NTH = int(os.environ.get("CHAOS_KILL_NTH", "1"))
POINTS = ("after_plan", "after_handover", "after_accept", "before_outcome_commit")
reached: dict[str, int] = {}
armed = {"outcome": False}
# how often each point was reached by this command, in memory its forked children share
shared = multiprocessing.get_context("fork").Array("i", len(POINTS))


def wait_for_file(path: Path) -> None:
    """Block until another process creates `path` (the test controls it)."""
    while not path.exists():
        time.sleep(0.01)


def point(name: str) -> None:
    with shared.get_lock():
        shared[POINTS.index(name)] += 1
        reached[name] = shared[POINTS.index(name)]
    if name == KILL_AT and reached[name] == NTH:
        mark = os.environ.get("CHAOS_MARK")
        if mark:
            Path(mark).write_text(name)
        os.kill(os.getpid(), signal.SIGKILL)


def install() -> None:
    if KILL_AT and KILL_AT not in POINTS:
        raise SystemExit(f"CHAOS_KILL_AT={KILL_AT!r}: not one of {', '.join(POINTS)}")
    import newsletter.mail.backends as delivery
    from newsletter.engine import tick as ticking

    timeout = os.environ.get("CHAOS_SENDGRID_TIMEOUT")
    if timeout:
        import newsletter.mail.backends.sendgrid as sendgrid

        if not hasattr(sendgrid, "TIMEOUT_SECONDS"):
            raise SystemExit("chaos: newsletter.delivery.sendgrid.TIMEOUT_SECONDS is gone")
        sendgrid.TIMEOUT_SECONDS = float(timeout)

    hold_dir = os.environ.get("CHAOS_HOLD_DIR")
    real_plan: Callable[..., Any] = ticking.plan

    def plan(*args: Any, **kwargs: Any) -> Any:
        result = real_plan(*args, **kwargs)
        if getattr(result, "chunks", None):
            if hold_dir and "held" not in reached:
                reached["held"] = 1
                Path(hold_dir, f"holding-{os.getpid()}").write_text("")
                wait_for_file(Path(hold_dir, "release"))
            point("after_plan")
        return result

    ticking.plan = plan  # type: ignore[assignment]

    real_get_backend = delivery.get_backend

    class Faulty:
        def __init__(self, real: Any) -> None:
            self.real = real
            self.name = real.name

        def send(self, message: Any, recipients: Any) -> Any:
            poison = os.environ.get("CHAOS_POISON")
            emails = [r.email for r in recipients]
            if poison and poison in emails:
                self.real.send(message, recipients[: emails.index(poison)])
                os.kill(os.getpid(), signal.SIGKILL)
            point("after_handover")
            outcomes = self.real.send(message, recipients)
            point("after_accept")
            armed["outcome"] = True
            return outcomes

    def get_backend(*args: Any, **kwargs: Any) -> Any:
        return Faulty(real_get_backend(*args, **kwargs))

    delivery.get_backend = get_backend  # type: ignore[assignment]

    from sqlalchemy import event
    from sqlalchemy.orm import Session

    @event.listens_for(Session, "before_commit")
    def before_commit(session: Session) -> None:
        if armed["outcome"]:
            armed["outcome"] = False
            point("before_outcome_commit")


def main() -> None:
    barrier = os.environ.get("CHAOS_BARRIER")
    install()
    from newsletter.cli import run  # not main: it may end the process before the check below

    if barrier:
        Path(barrier, f"ready-{os.getpid()}").write_text("")
        wait_for_file(Path(barrier, "go"))
    sys.argv = ["newsletter", *sys.argv[1:]]
    code = run()
    if code not in (0, None) or not KILL_AT:
        raise SystemExit(code)
    if KILL_AT:
        print(f"chaos: kill point {KILL_AT} #{NTH} never reached ({reached})", file=sys.stderr)
        raise SystemExit(97)


if __name__ == "__main__":
    main()
