"""The delivery protocol: a rendered message plus a batch of recipients in, one outcome each out."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from newsletter.core.vocabulary import HALT_CREDENTIALS, HALT_PRACTICE, HALT_TEMPLATE

# An address in a provider's reply (`550 5.1.1 <reader@example.net>: no such user`, a SendGrid
# error naming a recipient): replaced before the reply becomes an outcome's reason, which is
# logged and stored on the delivery.
ADDRESS = re.compile(r"<?[^\s<>@\"'(),;:\[\]]+@[^\s<>@\"'(),;:\[\]]+>?")


def scrub(text: str) -> str:
    """`text` with every email address replaced by `<address>` (no reader's address in logs)."""
    return ADDRESS.sub("<address>", text)


# Kinds of message. Only ARTICLE messages carry series/part in custom_args.
ARTICLE, CONFIRMATION, WELCOME, TEST = "article", "confirmation", "welcome", "test"
ALREADY_SUBSCRIBED = "already_subscribed"  # a signup form used by someone already active
YOUR_DATA = "your_data"  # "send me my data" from the preference page


@dataclass(frozen=True)
class Attachment:
    """A file that rides with a message (the reader's data as JSON)."""

    filename: str
    content_type: str  # "application/json"
    content: bytes


@dataclass(frozen=True)
class Message:
    """One email rendered once for a whole batch.

    `subject`, `html` and `text` may hold personal placeholders (see `newsletter.render`);
    each recipient's `values` fill them in (the backend substitutes, or hands them to the
    provider as substitutions so the body is built once per batch).
    """

    kind: str
    subject: str
    html: str
    text: str
    preheader: str = ""
    series: str | None = None  # slug, articles only
    part: int | None = None  # 1-based, articles only
    categories: tuple[str, ...] = ()
    sandbox: bool = False  # SendGrid sandbox mode (send-test --sandbox)
    attachments: tuple[Attachment, ...] = ()


@dataclass(frozen=True)
class Recipient:
    delivery_id: str  # ledger row id for articles; a random id for other mail
    email: str
    name: str | None
    unsubscribe_url: str  # goes into List-Unsubscribe (one-click POST target)
    values: Mapping[str, str] = field(default_factory=dict)  # placeholder -> value


@dataclass(frozen=True)
class Accepted:
    message_id: str


@dataclass(frozen=True)
class RetryLater:
    at: dt.datetime
    reason: str


@dataclass(frozen=True)
class Failed:
    reason: str


@dataclass(frozen=True)
class Unknown:
    """The request may have reached the provider, but no answer came back (the connection
    dropped or timed out after the body was sent; SMTP after DATA). Never resent blindly: the
    ledger row stays handed and reconcile settles it (the provider's event, or one resend after
    the documented window). Only a call that certainly did not reach the provider (refused
    connection, DNS or TLS failure, a 429/5xx answer) is a RetryLater."""

    reason: str


Outcome = Accepted | RetryLater | Failed | Unknown


# Why sending halted (store.halt keeps the kind with the halt).
CREDENTIALS, PRACTICE, TEMPLATE = HALT_CREDENTIALS, HALT_PRACTICE, HALT_TEMPLATE


class SendingHalted(Exception):
    """Stop sending until an operator acts: the provider refused our credentials (401/403), or
    the practice's settings can't make any message (`kind` PRACTICE), or its email templates
    can't be rendered (`kind` TEMPLATE); never a reader's fault.

    `outcomes` holds the outcomes of the recipients handled before the refusal (a prefix of
    the batch, usually empty); the rest of the batch was not sent.
    """

    def __init__(
        self,
        reason: str,
        outcomes: Sequence[Outcome] = (),
        fingerprint: str | None = None,
        kind: str = CREDENTIALS,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.outcomes: list[Outcome] = list(outcomes)
        # of the refused key, or of the practice's values (store.halt keeps it with the halt)
        self.fingerprint = fingerprint
        self.kind = kind


class Backend(Protocol):
    name: str

    def send(self, message: Message, recipients: Sequence[Recipient]) -> list[Outcome]:
        """Send one message to each recipient; one outcome per recipient, in the same order.

        May raise SendingHalted; never raises for an ordinary per-batch failure (that is
        RetryLater, Unknown or Failed for every recipient).
        """
        ...
