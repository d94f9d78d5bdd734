"""A worker whose provider dies mid-batch: sends the first FAULT_AFTER mails, then hangs.

The test SIGKILLs this worker while it hangs (between two recipients of one batch), then starts
a normal worker. Used only by test_celery.py.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import newsletter.mail.backends as delivery
from newsletter.core.config import Settings
from newsletter.mail.message import Message, Outcome, Recipient

real_get_backend = delivery.get_backend
AFTER = int(os.environ["FAULT_AFTER"])
REACHED = Path(os.environ["FAULT_REACHED"])


class DiesMidBatch:
    name = "outbox"

    def __init__(self, settings: Settings) -> None:
        self.real = real_get_backend(settings)

    def send(self, message: Message, recipients: Sequence[Recipient]) -> list[Outcome]:
        outcomes = self.real.send(message, list(recipients[:AFTER]))
        REACHED.write_text(str(len(outcomes)))
        while True:  # the provider call never returns: the test kills us here
            time.sleep(1)


def fake_get_backend(settings: Settings, name: str | None = None) -> DiesMidBatch:
    return DiesMidBatch(settings)


delivery.get_backend = fake_get_backend  # type: ignore[assignment]

if __name__ == "__main__":
    from newsletter.cli import main

    sys.argv = ["newsletter", "worker", *sys.argv[1:]]
    main()
